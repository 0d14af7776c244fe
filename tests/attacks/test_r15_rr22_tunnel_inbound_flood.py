"""R15-RR22-5: a malicious partner can make the other party's tunnel hold unbounded bytes and start unbounded
threads; only the OUTGOING side is bounded (`_BUFFER_LIMIT`).

Attack: the partner seals (authentically: it is a party of the run) tunnel envelopes of its own making.
(a) Bytes: it opens one stream and sends DATA frames faster than the local spu reads them, or after the local
connection is gone: `_deliver` appends every frame to that stream's unbounded ``queue.Queue`` inbox
(psi_rr22_tunnel.py:250) and a writer whose socket failed returns without draining it, so every later frame
stays in memory until the session closes. Each pump can carry as much as the transport allows.
(b) Threads: one envelope with thousands of OPEN frames (32 bytes of frame table each) starts one writer thread
per frame (`_start`, line 98), each redialling the local spu port every 50 ms for 60 s.

Expected safe behaviour: inbound bytes per session bounded (e.g. by the same 64 MB as outbound: stop reading
envelopes / fail with TunnelError when exceeded) and the number of streams the peer may open bounded (spu's
link needs a handful) with a TunnelError beyond it.
Fixed: bytes for a stream whose local connection failed are dropped; inbound bytes held are bounded by 64 MB
(feed waits, then TunnelError); the peer may open at most `MAX_STREAMS` (32) streams.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import numpy as np

from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.vertical.psi_rr22_tunnel import DATA, OPEN, Tunnel, TunnelError


def _closing_server() -> tuple[socket.socket, int]:
    """The bank's own spu, which drops a connection it does not like (garbage from the peer)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    return server, int(server.getsockname()[1])


def _setup(target_port: int) -> tuple[Tunnel, SealedChannels, np.ndarray]:
    keys = {n: PartyKeys.generate() for n in ("bank", "pay")}
    public = {n: k.public_bytes for n, k in keys.items()}
    ch = {n: SealedChannels(n, keys[n], public, "run-r15") for n in keys}
    session = np.frombuffer(os.urandom(16), dtype=np.uint8).copy()
    bank = Tunnel("bank", "pay", session.tobytes(), lambda x: ch["bank"].seal_arrays("pay", x),
                  lambda e: ch["bank"].open_arrays("pay", e), target_port=target_port)
    bank.bind_worker(os.getpid())  # the test process plays the bank's spu worker
    return bank, ch["pay"], session


def _envelope(pay: SealedChannels, session: np.ndarray, seq: int, frames: list[tuple[int, int, int, bytes]]
              ) -> np.ndarray:
    """What the malicious partner seals: frames (origin 0 = opened by the partner, stream, kind, data)."""
    head = np.array([[o, s, k, len(d)] for o, s, k, d in frames], dtype=np.uint64).reshape(-1, 4)
    data = np.frombuffer(b"".join(d for *_, d in frames), dtype=np.uint8)
    return pay.seal_arrays("bank", {"session": session, "seq": np.array([seq], dtype=np.uint64),
                                    "head": head, "data": data})


def _held(bank: Tunnel) -> int:
    return sum(len(x) for s in list(bank._streams.values()) for x in list(s.inbox.queue) if x)


def test_inbound_bytes_stay_bounded() -> None:
    server, port = _closing_server()
    bank, pay, session = _setup(port)
    chunk = os.urandom(4 << 20)
    try:
        bank.feed(_envelope(pay, session, 0, [(0, 7, OPEN, b""), (0, 7, DATA, chunk)]))
        time.sleep(0.5)  # the writer dials the bank's spu, which drops it: the writer is gone
        try:
            for seq in range(1, 24):  # 96 MB more to the dead stream
                bank.feed(_envelope(pay, session, seq, [(0, 7, DATA, chunk)]))
        except TunnelError:
            return  # refusing the flood is a safe answer
        held = _held(bank)
        assert held <= 64 << 20, f"the bank's tunnel holds {held >> 20} MB the partner sent"
    finally:
        bank.close()
        server.close()


def test_the_partner_cannot_open_unbounded_streams() -> None:
    bank, pay, session = _setup(target_port=1)  # nothing listens: each writer keeps redialling
    before = threading.active_count()
    try:
        try:
            bank.feed(_envelope(pay, session, 0, [(0, sid, OPEN, b"") for sid in range(1_000)]))
        except TunnelError:
            return
        started = threading.active_count() - before
        assert started <= 64, f"{started} threads started by one envelope from the partner"
    finally:
        bank.close()
