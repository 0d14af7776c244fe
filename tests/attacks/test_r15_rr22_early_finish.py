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

import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from sampan.core.party import PartyApp
from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.psi_party import PsiParty
from sampan.vertical.psi_rr22_party import Rr22Party, register_rr22
from sampan.wire import Message

ROOT = Path(__file__).resolve().parents[2]
HAS_SPU = (ROOT / ".venv-spu" / "bin" / "python").is_file()
RUN = "run-r15-rr22"


def federation(a: list[str], b: list[str]) -> tuple[dict[str, PsiParty], dict[str, Rr22Party],
                                                    dict[str, SealedChannels], InProcessTransport]:
    """Bank (label holder) and pay (partner) as the project's tests build them; the test plays the coordinator."""
    parties = {"bank": PsiParty("bank", np.array(a, dtype=object)), "pay": PsiParty("pay", np.array(b, dtype=object))}
    keys = {n: PartyKeys.generate() for n in parties}
    public = {n: k.public_bytes for n, k in keys.items()}
    apps, handlers, channels = {}, {}, {}
    for name, party in parties.items():
        app = PartyApp(name)
        party.register(app)
        handlers[name] = register_rr22(party, app)
        party.channels = channels[name] = SealedChannels(name, keys[name], public, RUN,
                                                         roles={"bank": "label_holder", "pay": "partner"})
        apps[name] = app
    return parties, handlers, channels, InProcessTransport(apps)


def ask(transport: InProcessTransport, to: str, kind: str, peer: str, envelope: np.ndarray | None = None,
        **meta: object) -> Message:
    arrays = {} if envelope is None else {"envelope": envelope}
    replies = list(transport.exchange([Message(RUN, 0, "coordinator", to, kind, arrays,
                                               {"mode": "both", "check_format": True, "timeout": 60.0,
                                                "peer": peer, **meta})]))
    assert len(replies) == 1
    return replies[0]


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
