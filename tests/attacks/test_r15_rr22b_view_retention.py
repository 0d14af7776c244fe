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

Fixed: `Tunnel._frame` hands a frame on as a view of its envelope only when the frame is at least half of the
envelope, and copies it otherwise, so the bytes queued frames keep alive stay within twice the bytes counted
against `_BUFFER_LIMIT`. The first test's 1-byte frames are now copies (12 bytes held); the second checks the
2x bound at the split point, where a frame of just under half is copied and one of half is kept as a view.
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
        assert held <= 2 * bank._in_bytes
    finally:
        bank.close()


@pytest.mark.parametrize("small", [(1 << 20) - 1, 1 << 20])
def test_a_queued_view_keeps_at_most_twice_what_it_counts(small: int) -> None:
    keys = {n: PartyKeys.generate() for n in ("bank", "pay")}
    public = {n: k.public_bytes for n, k in keys.items()}
    ch = {n: SealedChannels(n, keys[n], public, "run-r15b") for n in keys}
    session = np.frombuffer(os.urandom(16), dtype=np.uint8).copy()
    bank = Tunnel("bank", "pay", session.tobytes(), lambda x: ch["bank"].seal_arrays("pay", x),
                  lambda e: ch["bank"].open_arrays("pay", e), target_port=_unused_port())
    bank.bind_worker(os.getpid())
    try:  # per envelope: `small` bytes for the stalled stream 1, the rest (2 MB in all) for the closed stream 2
        bank.feed(_envelope(ch["pay"], session, 0, [(0, 1, OPEN, b""), (0, 2, OPEN, b""), (0, 2, CLOSE, b"")]))
        for seq in range(1, 5):
            bank.feed(_envelope(ch["pay"], session, seq,
                                [(0, 1, DATA, bytes([seq]) * small), (0, 2, DATA, bytes((2 << 20) - small))]))
        queued = [x for s in list(bank._streams.values()) for x in list(s.inbox.queue) if x]
        held = sum(dict(_root_size(x) for x in queued).values())
        assert bank._in_bytes == 4 * small
        assert held <= 2 * bank._in_bytes
        assert [bytes(x) for x in queued] == [bytes([seq]) * small for seq in range(1, 5)]  # in order, intact
        views = sum(isinstance(x, memoryview) for x in queued)
        assert views == (4 if 2 * small >= 2 << 20 else 0)
    finally:
        bank.close()
