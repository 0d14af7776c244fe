"""R15-PSI2-2 (regression guard): inbound frames held as views of their envelope (commit 08605f9) pinned whole
envelopes that the 64 MB inbound bound (R15-RR22-5) does not count. Withdrawn by 1f6981f (copied frames again)
before this review was filed; the test stays so that views do not come back without a bound that counts them.

Attack (malicious partner, authentic envelopes of its own making): it stalls one stream (the local spu has not
read yet: its socket buffer is full), then sends envelopes each carrying one byte for that stream and a large
frame for a stream it has closed. The large frame is dropped (never counted in the inbound bytes), but the
queued one-byte frame is a memoryview into the opened envelope, so the whole envelope stays in memory until the
local spu reads that byte: the bytes held grow with the number of envelopes while the bound sees a few bytes.

Expected: the bytes a tunnel holds for its local connections (whatever object holds them) stay within the
inbound bound (`_BUFFER_LIMIT`, 64 MB), e.g. by copying each queued frame (`bytes(view)`) or counting the
envelope's size while any view of it is queued.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import numpy as np

from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.vertical.psi_rr22_tunnel import CLOSE, DATA, OPEN, Tunnel, TunnelError


def _silent_server() -> tuple[socket.socket, list[socket.socket], int]:
    """The bank's own spu, busy computing: it accepts connections but does not read them yet."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            held.append(conn)
    threading.Thread(target=serve, daemon=True).start()
    return server, held, int(server.getsockname()[1])


def _envelope(pay: SealedChannels, session: np.ndarray, seq: int, frames: list[tuple[int, int, int, bytes]]
              ) -> np.ndarray:
    head = np.array([[o, s, k, len(d)] for o, s, k, d in frames], dtype=np.uint64).reshape(-1, 4)
    data = np.frombuffer(b"".join(d for *_, d in frames), dtype=np.uint8)
    return pay.seal_arrays("bank", {"session": session, "seq": np.array([seq], dtype=np.uint64),
                                    "head": head, "data": data})


def _bytes_held(bank: Tunnel) -> int:
    """Bytes kept alive by what the tunnel has queued for its local connections (a view keeps its whole buffer)."""
    buffers: dict[int, int] = {}
    for stream in list(bank._streams.values()):
        for item in list(stream.inbox.queue):
            if item is None:
                continue
            owner = item.obj if isinstance(item, memoryview) else item
            buffers[id(owner)] = owner.nbytes if isinstance(owner, (memoryview, np.ndarray)) else len(owner)
    return sum(buffers.values())


def test_bytes_held_for_a_stalled_stream_stay_bounded() -> None:
    server, held, port = _silent_server()
    keys = {n: PartyKeys.generate() for n in ("bank", "pay")}
    public = {n: k.public_bytes for n, k in keys.items()}
    ch = {n: SealedChannels(n, keys[n], public, "run-r15-psi2") for n in keys}
    session = np.frombuffer(os.urandom(16), dtype=np.uint8).copy()
    bank = Tunnel("bank", "pay", session.tobytes(), lambda x: ch["bank"].seal_arrays("pay", x),
                  lambda e: ch["bank"].open_arrays("pay", e), target_port=port)
    bank.bind_worker(os.getpid())  # the test process plays the bank's spu worker (it holds the listener)
    big = os.urandom(4 << 20)
    try:
        bank.feed(_envelope(ch["pay"], session, 0, [(0, 7, OPEN, b""), (0, 8, OPEN, b""), (0, 8, CLOSE, b""),
                                                    (0, 7, DATA, os.urandom(16 << 20))]))
        time.sleep(1.0)  # stream 7's writer has dialled the silent spu and blocks in sendall
        try:
            for seq in range(1, 31):  # 30 envelopes of 4 MB: one byte for the stalled stream, the rest dropped
                bank.feed(_envelope(ch["pay"], session, seq, [(0, 7, DATA, b"x"), (0, 8, DATA, big)]))
        except TunnelError:
            return  # refusing the flood is a safe answer
        kept = _bytes_held(bank)
        assert kept <= 64 << 20, f"the bank's tunnel keeps {kept >> 20} MB alive for {bank._in_bytes} counted bytes"
    finally:
        bank.close()
        server.close()
        for conn in held:
            conn.close()
