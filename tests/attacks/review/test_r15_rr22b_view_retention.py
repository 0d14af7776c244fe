"""R15-RR22B-1: inbound frames delivered as views (1351db3) let the partner pin whole envelopes with 1-byte frames.

Attack (malicious partner; it seals its tunnel envelopes authentically, being a party of the run): before the
bank's spu is listening (or whenever a local connection is slow to take bytes) the stream's inbox is not drained.
Each envelope carries a 1-byte DATA frame for such a stream and a large DATA frame for a stream the partner
itself closed (dropped at once, never counted). Since `_feed` hands frames on as memoryviews of the envelope's
plaintext, the queued 1-byte frame keeps the whole plaintext alive, while the inbound bound (`_BUFFER_LIMIT`,
64 MB, R15-RR22-5) counts only the frame's own length: memory held grows with every envelope, bounded by
nothing. Before the change each frame was a copy (`data.tobytes()` sliced), so held == counted.

Expected safe behaviour: bytes kept alive by queued inbound frames stay within the 64 MB inbound bound (copy a
frame that is small relative to its envelope, or count the envelope's size while any of its frames is queued).
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest

from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.vertical.psi_rr22_tunnel import CLOSE, DATA, OPEN, Tunnel, TunnelError


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _envelope(pay: SealedChannels, session: np.ndarray, seq: int, frames: list[tuple[int, int, int, bytes]]
              ) -> np.ndarray:
    head = np.array([[o, s, k, len(d)] for o, s, k, d in frames], dtype=np.uint64).reshape(-1, 4)
    data = np.frombuffer(b"".join(d for *_, d in frames), dtype=np.uint8)
    return pay.seal_arrays("bank", {"session": session, "seq": np.array([seq], dtype=np.uint64),
                                    "head": head, "data": data})


def _root_size(item: object) -> tuple[int, int]:
    """(identity, size) of the buffer a queued frame keeps alive."""
    obj = item.obj if isinstance(item, memoryview) else item
    while getattr(obj, "base", None) is not None:
        obj = obj.base  # type: ignore[union-attr]
    size = obj.nbytes if isinstance(obj, (np.ndarray, memoryview)) else len(obj)  # type: ignore[arg-type]
    return id(obj), int(size)


@pytest.mark.xfail(strict=True, reason="R15-RR22B-1: 1-byte inbound frames pin whole envelopes past the 64 MB bound")
def test_queued_frames_keep_no_more_than_the_inbound_bound_alive() -> None:
    keys = {n: PartyKeys.generate() for n in ("bank", "pay")}
    public = {n: k.public_bytes for n, k in keys.items()}
    ch = {n: SealedChannels(n, keys[n], public, "run-r15b") for n in keys}
    session = np.frombuffer(os.urandom(16), dtype=np.uint8).copy()
    bank = Tunnel("bank", "pay", session.tobytes(), lambda x: ch["bank"].seal_arrays("pay", x),
                  lambda e: ch["bank"].open_arrays("pay", e), target_port=_unused_port())
    bank.bind_worker(os.getpid())
    filler = bytes(8 << 20)
    try:
        try:  # stream 1: the bank's spu is not listening yet (its writer redials for 60 s); stream 2: closed
            bank.feed(_envelope(ch["pay"], session, 0, [(0, 1, OPEN, b""), (0, 2, OPEN, b""), (0, 2, CLOSE, b"")]))
            for seq in range(1, 13):  # 12 envelopes of 8 MB: 96 MB, of which 12 bytes are counted
                bank.feed(_envelope(ch["pay"], session, seq, [(0, 1, DATA, b"x"), (0, 2, DATA, filler)]))
        except TunnelError:
            return  # refusing is a safe answer
        queued = [x for s in list(bank._streams.values()) for x in list(s.inbox.queue) if x]
        held = sum(dict(_root_size(x) for x in queued).values())
        assert bank._in_bytes <= 64 << 20
        assert held <= 64 << 20, f"queued frames of {bank._in_bytes} bytes keep {held >> 20} MB alive"
    finally:
        bank.close()
