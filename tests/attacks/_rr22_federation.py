"""Shared setup of the RR22 attack tests: bank (label holder) and pay (partner) in process; the test coordinates."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
