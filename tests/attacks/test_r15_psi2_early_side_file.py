"""R15-PSI2-1 (fixed; this test shows the attack now fails).

R15-PSI2-1: the label holder's early side file (commit 5c09449) outlives its session when the deadline comes first.

Attack (a coordinator that tampers, or one whose timeout is tiny): ``psi.rr22.offer`` carries ``timeout``; the
label holder arms its session's deadline (`_arm`) and only then makes the session folder and starts the writer
of ``ids.csv`` (`_write_early`). When the timer closes the session before the folder exists, or between the
writer thread's creation and its start (``join`` of an unstarted thread raises RuntimeError in the timer thread,
a traceback, and the folder is never removed), the writer then fills a folder nobody removes: every id of the
label holder in hex stays on disk for the life of the party process (the sweep only takes dead parties' folders),
and the session is already closed, so no later ``psi.rr22.close`` removes it.

Expected: once a session is closed, none of its side files exist (the module docstring: removed "when the
session closes, fails or times out").
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


def test_no_side_file_outlives_a_session_closed_by_its_deadline(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ids = [f"BR{i:08d}" for i in range(2000)]
    _, handlers, _, transport = federation(ids, ids)
    errors: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    for _ in range(40):
        try:
            ask(transport, "bank", "psi.rr22.offer", "pay", timeout=1e-9)
        except Exception:  # noqa: BLE001 - a refusal is a safe answer; what matters is what is left on disk
            pass
        time.sleep(0.05)
        session = handlers["bank"].sessions.get("pay")
        if session is not None:
            if session.writer is not None and session.writer.is_alive():
                session.writer.join()
            assert session.closed, "a session past its deadline is still open"
    leftover = sorted(p.parent.name for p in tmp_path.rglob("ids.csv"))
    assert not leftover, f"{len(leftover)} closed sessions left the label holder's ids on disk: {leftover[:3]}"
    assert not errors, f"the deadline timer raised: {errors[0]!r}"
