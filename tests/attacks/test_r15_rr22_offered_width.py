"""R15-RR22-1: the label holder's declared id width is trusted without bound: one integer sizes the partner's
side file (and its memory) at will.

Attack: a malicious (or careless) label holder puts a huge ``width`` in its sealed ``psi.rr22.offer`` (the
field is its own claim; nothing ties it to its ids). The partner's `Rr22Party._accept` takes
``width = max(own, offered)`` with no cap (psi_rr22_party.py:314), then `_write_ids` pads every one of ITS OWN
ids to that width and writes them as hex into the side file, block by block of 2^20 ids (`_padded` allocates
n_block x width bytes). With 10M partner ids an offered width of 4,096 is an 80 GB file on the partner's disk;
a width of 10^6 asks for a 1 TB block in memory (a MemoryError traceback, not a clear error). The same width
also pads spu's OPRF inputs, so the run's time grows with it. It is also how a single over-long id at one
party (R15-PSI-1) becomes the other party's cost.

Expected safe behaviour: the partner refuses an offered width beyond a sane cap (or beyond what ids of the
announced shape can have) with a clear PsiError naming the peer, before writing anything; or ids are carried
as fixed-width hashes so the width never depends on the peer.
Fixed: the partner refuses a declared width that is not an int in 1..256 (`MAX_ID_BYTES`, the ECDH ids cap)
with a PsiError naming the peer, before any file is written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from sampan.core.party import PartyApp
from sampan.core.transport import PartyError
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


def test_partner_refuses_an_absurd_offered_width(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ids_b = [f"BR{i:08d}" for i in range(2_000)]
    _, handlers, channels, transport = federation(["BR00000001"], ids_b)
    shape = str(handlers["pay"].psi._prepare().shape)  # the malicious bank claims the partner's own id shape
    offer = Message(RUN, 0, "bank", "pay", "psi.rr22.offer",
                    {"session": np.frombuffer(os.urandom(16), dtype=np.uint8)},
                    {"mode": "both", "n": 1, "shape": shape, "width": 20_000})
    sealed = channels["bank"].seal("pay", offer)  # sealed by the bank itself: authentic, only its content lies
    try:
        with pytest.raises(PartyError, match="declared an RR22 id width of 20000 bytes; ids are at most 256"):
            ask(transport, "pay", "psi.rr22.accept", "bank", sealed)
    finally:
        side = [p / "ids.csv" for p in tmp_path.iterdir() if (p / "ids.csv").is_file()]
        sizes = [f.stat().st_size for f in side]
        ask(transport, "pay", "psi.rr22.close", "bank")
        print("partner side file bytes:", sizes)
    assert not handlers["pay"].sessions
