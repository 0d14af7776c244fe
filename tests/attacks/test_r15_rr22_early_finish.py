"""R15-RR22-9: ``psi.rr22.finish`` before the workers are done blocks the party's handler with no time limit.

Attack: a curious or broken coordinator sends ``psi.rr22.finish`` (or simply stops pumping and then asks for
the result). `Rr22Party._finish` calls ``session.process.wait()`` with no timeout (psi_rr22_party.py:365): the
worker, whose link bytes no longer move, waits for spu's own recv timeout (10 minutes, `_rr22_worker.py`) or
for the party's deadline timer, which the coordinator chooses (R15-RR22-3: it can disarm it). Meanwhile the
handler thread is held, and the deployed gRPC party answers one request at a time
(transport/grpc_client.py:271: `_answer` runs in the stream loop), so the whole party answers nothing else, not
even ``psi.rr22.close``, while its heartbeats (own thread) tell the coordinator it is alive.

Expected safe behaviour: finish on an unfinished worker answers at once (or within a short bound the party
sets) with a clear PsiError ("the RR22 worker has not finished"), and the session is torn down.
Fixed: finish waits at most `FINISH_WAIT` (2 s, never past the session deadline), then answers a clear PsiError
and the session is torn down.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rr22_federation import HAS_SPU, RUN, ask, federation  # noqa: E402,F401

pytestmark = pytest.mark.skipif(not HAS_SPU, reason="spu venv missing: tools/install_spu.sh")


def test_an_early_finish_answers_promptly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ids = [f"BR{i:08d}" for i in range(500)]
    _, handlers, _, transport = federation(ids[:300], ids[200:])
    offer = ask(transport, "bank", "psi.rr22.offer", "pay")
    accept = ask(transport, "pay", "psi.rr22.accept", "bank", offer.arrays["envelope"])
    ask(transport, "bank", "psi.rr22.start", "pay", accept.arrays["envelope"])
    sessions = [handlers["pay"].sessions["bank"], handlers["bank"].sessions["pay"]]
    outcome: list[object] = []

    def finish() -> None:
        try:
            outcome.append(ask(transport, "pay", "psi.rr22.finish", "bank"))
        except Exception as exc:  # noqa: BLE001 - a prompt error is the safe answer
            outcome.append(exc)

    worker = threading.Thread(target=finish, daemon=True)
    worker.start()
    try:
        worker.join(3.0)
        assert not worker.is_alive(), "psi.rr22.finish still blocked 3 s after the request"
    finally:
        for session in sessions:  # the test's own cleanup: kills the workers, which frees the handler
            session.close()
        worker.join(10.0)
    assert outcome and isinstance(outcome[0], Exception)
