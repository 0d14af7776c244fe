"""R15-PSI2-6 (fixed; this test shows the attack now fails).

R15-PSI2-6 (predates today's changes, found while checking replay): a replayed ``psi.rr22.start`` is accepted.

Attack (coordinator that replays what it relays): it sends the label holder the same sealed accept envelope in a
second ``psi.rr22.start``. `_start` has no "already started" check, so `_launch` runs again: a second tunnel (a
127.0.0.1 listener) and a second spu worker on the same session folder, and the first worker and tunnel are
dropped without being closed or killed (when the dropped worker's pipe closes it removes its folder, the one the
second worker uses). A replayed offer or accept ends the session (R15-RR22-2); a replayed start does not.

Expected: a second start for a session that has started is refused and leaves the running session and its
worker as they were; after ``psi.rr22.close`` no worker the session started is still running.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rr22_federation import HAS_SPU, ask, federation  # noqa: E402

pytestmark = pytest.mark.skipif(not HAS_SPU, reason="spu venv missing: tools/install_spu.sh")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_a_replayed_start_is_refused_and_leaves_no_worker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ids = [f"BR{i:08d}" for i in range(300)]
    _, handlers, _, transport = federation(ids[:200], ids[100:])
    pids: list[int] = []
    refused = False
    try:
        offer = ask(transport, "bank", "psi.rr22.offer", "pay")
        accept = ask(transport, "pay", "psi.rr22.accept", "bank", offer.arrays["envelope"])
        ask(transport, "bank", "psi.rr22.start", "pay", accept.arrays["envelope"])
        pids.append(handlers["bank"].sessions["pay"].process.pid)
        try:
            ask(transport, "bank", "psi.rr22.start", "pay", accept.arrays["envelope"])  # the replay
        except Exception:  # noqa: BLE001 - the refusal expected
            refused = True
        session = handlers["bank"].sessions.get("pay")
        if session is not None and session.process is not None:
            pids.append(session.process.pid)
        # the refusal leaves the running session as it was: same worker, still running, session still open
        assert session is not None and not session.closed, "the refused replay closed the running session"
        assert len(set(pids)) == 1 and _running(pids[0]), "the refused replay replaced or stopped the first worker"
    finally:
        for party, peer in (("pay", "bank"), ("bank", "pay")):
            ask(transport, party, "psi.rr22.close", peer)
    time.sleep(1.0)
    alive = [pid for pid in set(pids) if _running(pid)]
    for pid in alive:
        os.killpg(pid, 9)  # the test's own clean-up of what the party left
    assert refused, "a replayed psi.rr22.start was accepted"
    assert not alive, f"{len(alive)} spu worker(s) still run after the session closed"
