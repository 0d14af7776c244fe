"""R15-PSI2-5 (fixed; this test shows the attack now fails).

R15-PSI2-5: since commit 5c09449 the label holder's deadline runs from the offer, so it can fire while
``psi.rr22.start`` is inside `_launch` (rewriting the side file at the partner's wider id width, or waiting for
the early writer). The timer's `close` then tears down what exists at that instant (no tunnel, no worker yet) and
removes the folder; `_launch` goes on, opens the tunnel (a 127.0.0.1 listener and its accept thread), fails on
the removed folder with a raw FileNotFoundError that names the party's private temp path, and the guard's
`close` is a no-op on the closed session: the tunnel is never closed (and a worker started in the same window
would never be killed). A coordinator that times its start repeats it at will.

Expected: whatever the timing of the deadline, once the session is closed nothing it started is left (no tunnel
thread), and the failure is a clear PsiError, not an OSError with a local path.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rr22_federation import HAS_SPU, ask, federation  # noqa: E402

pytestmark = pytest.mark.skipif(not HAS_SPU, reason="spu venv missing: tools/install_spu.sh")


def _tunnel_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "rr22-accept-bank" and t.is_alive()]


def test_a_deadline_during_the_start_leaves_nothing_running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    bank_ids = [f"BR{i:08d}" for i in range(30_000)]
    pay_ids = [f"BR{i:08d}" for i in range(500)] + ["BR" + "1" * 254]  # same shape, one id 256 bytes wide
    _, handlers, _, transport = federation(bank_ids, pay_ids)
    before = set(_tunnel_threads())
    error = ""
    try:
        offer = ask(transport, "bank", "psi.rr22.offer", "pay", timeout=4.0)
        accept = ask(transport, "pay", "psi.rr22.accept", "bank", offer.arrays["envelope"], timeout=60.0)
        deadline = handlers["bank"].sessions["pay"].deadline
        time.sleep(max(0.0, deadline - 0.2 - time.monotonic()))  # the start comes just before the offer's deadline
        try:
            ask(transport, "bank", "psi.rr22.start", "pay", accept.arrays["envelope"], timeout=60.0)
        except Exception as exc:  # noqa: BLE001 - refusing is fine; what it leaves and says is checked below
            error = str(exc)
    finally:
        for party, peer in (("pay", "bank"), ("bank", "pay")):
            ask(transport, party, "psi.rr22.close", peer)
    time.sleep(0.5)
    leaked = [t for t in _tunnel_threads() if t not in before]
    assert not leaked, f"{len(leaked)} tunnel listener(s) of a closed session still run (start said: {error[:160]})"
    assert "FileNotFoundError" not in error and str(tmp_path) not in error, error


def test_a_deadline_just_before_the_launch_refuses_the_start_cleanly(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    """R15-PSI2-5, the other order: the deadline closes the session after `_start` found it live but before
    `_launch` took its lock. The start is refused with a short error naming the party, not a local path, and
    nothing is started (no tunnel, no worker, no folder)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ids = [f"BR{i:08d}" for i in range(300)]
    _, handlers, _, transport = federation(ids[:200], ids[100:])
    before = set(_tunnel_threads())
    error = ""
    try:
        offer = ask(transport, "bank", "psi.rr22.offer", "pay", timeout=60.0)
        accept = ask(transport, "pay", "psi.rr22.accept", "bank", offer.arrays["envelope"], timeout=60.0)
        bank = handlers["bank"]
        checked = bank._check_shapes

        def deadline_now(*args: object) -> None:
            checked(*args)  # type: ignore[arg-type]
            bank.sessions["pay"].expire()  # what the timer does when it fires here

        monkeypatch.setattr(bank, "_check_shapes", deadline_now)
        try:
            ask(transport, "bank", "psi.rr22.start", "pay", accept.arrays["envelope"], timeout=60.0)
        except Exception as exc:  # noqa: BLE001 - the refusal expected
            error = str(exc)
    finally:
        for party, peer in (("pay", "bank"), ("bank", "pay")):
            ask(transport, party, "psi.rr22.close", peer)
    time.sleep(0.3)
    assert "has ended" in error and "bank" in error, error
    assert str(tmp_path) not in error and "OSError" not in error and "NotFound" not in error, error
    assert not [t for t in _tunnel_threads() if t not in before]
    assert not list(tmp_path.rglob("ids.csv")), "a folder of the closed session is left"


def test_a_deadline_inside_the_launch_waits_then_undoes_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """R15-PSI2-5, the window itself: the deadline fires while `_launch` makes the tunnel and the worker. Its
    close waits for the launch, then kills the worker, closes the tunnel and removes the folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ids = [f"BR{i:08d}" for i in range(300)]
    _, handlers, _, transport = federation(ids[:200], ids[100:])
    before = set(_tunnel_threads())
    bank = handlers["bank"]
    spawn = bank._spawn

    def deadline_meanwhile(session: object, python: object) -> None:
        threading.Thread(target=session.expire, daemon=True).start()  # type: ignore[attr-defined]
        time.sleep(0.2)  # the timer's close is now waiting on the session's lock
        spawn(session, python)  # type: ignore[arg-type]

    monkeypatch.setattr(bank, "_spawn", deadline_meanwhile)
    try:
        offer = ask(transport, "bank", "psi.rr22.offer", "pay", timeout=60.0)
        accept = ask(transport, "pay", "psi.rr22.accept", "bank", offer.arrays["envelope"], timeout=60.0)
        session = bank.sessions["pay"]
        try:
            ask(transport, "bank", "psi.rr22.start", "pay", accept.arrays["envelope"], timeout=60.0)
        except Exception:  # noqa: BLE001 - a refusal is fine too; what is left is checked below
            pass
        time.sleep(0.5)
        assert session.closed, "the deadline that fired during the launch did not close the session"
        assert session.process is None or session.process.poll() is not None, "the worker outlived its session"
        assert not [t for t in _tunnel_threads() if t not in before], "the tunnel outlived its session"
        assert session.directory is not None and not session.directory.exists(), "the folder outlived its session"
    finally:
        for party, peer in (("pay", "bank"), ("bank", "pay")):
            ask(transport, party, "psi.rr22.close", peer)
