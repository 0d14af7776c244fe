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
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from sampan.core.transport import PartyError
from sampan.wire import Message

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rr22_federation import HAS_SPU, RUN, ask, federation  # noqa: E402,F401

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
