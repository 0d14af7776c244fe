"""R15-RR22-10: two concurrent pumps carrying the same envelope are both accepted: a replay (and the drop of
the next envelope) that the sequence number was meant to stop.

Attack: the coordinator pumps a party twice at the same time with the SAME sealed tunnel envelope. Low
severity today: the deployed gRPC party answers one request at a time (transport/grpc_client.py:271), so this
needs a party app served concurrently (a threaded server, a future transport).
`Tunnel.feed` opens the envelope, compares ``seq`` with
``self._seq_in`` and increments it later (psi_rr22_tunnel.py:217-223) with no lock held, so both calls can
pass the check before either increments: the frames are delivered twice and ``_seq_in`` jumps by two. The
coordinator then skips the next envelope, so it has REPLACED envelope k+1 by a replay of envelope k without
any error: the module's promise that "a replayed, reordered or dropped envelope ... stops the tunnel" does not
hold against a racing coordinator. (The test narrows CPython's switch interval to hit the window in
milliseconds; on a real party the window is the same code, hit by chance or by repeated tries.)

Expected safe behaviour: check-and-advance of the sequence number is atomic (under the tunnel's lock, before
any frame is delivered), so exactly one of two identical envelopes is accepted and the other raises
TunnelError.
Fixed: `Tunnel.feed` checks and advances the sequence number and delivers the frames under one lock.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

import numpy as np

from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.vertical.psi_rr22_tunnel import DATA, OPEN, Tunnel, TunnelError


def test_the_same_envelope_is_accepted_once_even_when_fed_concurrently() -> None:
    keys = {n: PartyKeys.generate() for n in ("bank", "pay")}
    public = {n: k.public_bytes for n, k in keys.items()}
    ch = {n: SealedChannels(n, keys[n], public, "run-r15") for n in keys}
    session = np.frombuffer(os.urandom(16), dtype=np.uint8).copy()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    threading.Thread(target=lambda: [server.accept()[0].recv(1 << 20) for _ in range(1)], daemon=True).start()
    bank = Tunnel("bank", "pay", session.tobytes(), lambda x: ch["bank"].seal_arrays("pay", x),
                  lambda e: ch["bank"].open_arrays("pay", e), target_port=int(server.getsockname()[1]))

    def envelope(seq: int, frames: list[tuple[int, int, int, bytes]]) -> np.ndarray:
        head = np.array([[o, s, k, len(d)] for o, s, k, d in frames], dtype=np.uint64).reshape(-1, 4)
        data = np.frombuffer(b"".join(d for *_, d in frames), dtype=np.uint8)
        return ch["pay"].seal_arrays("bank", {"session": session, "seq": np.array([seq], dtype=np.uint64),
                                              "head": head, "data": data})

    switch = sys.getswitchinterval()
    double = 0
    try:
        bank.feed(envelope(0, [(0, 1, OPEN, b"")]))
        sys.setswitchinterval(1e-6)
        seq = 1
        for _ in range(3_000):
            sealed = envelope(seq, [(0, 1, DATA, b"%06d;" % seq)])
            accepted: list[int] = []
            barrier = threading.Barrier(2)

            def feed(sealed: np.ndarray = sealed, accepted: list[int] = accepted,
                     barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                try:
                    bank.feed(sealed)
                    accepted.append(1)
                except TunnelError:
                    pass
            threads = [threading.Thread(target=feed) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seq = bank._seq_in  # the coordinator follows the party's counter (it skips what was "replaced")
            if len(accepted) == 2:
                double += 1
                break
    finally:
        sys.setswitchinterval(switch)
        bank.close()
        server.close()
    assert double == 0, "one sealed envelope was accepted twice (fed by two concurrent pumps)"
