"""R15-RR22B-2: two concurrent pumps of one party can send its spu's bytes out of order, under valid sequence
numbers, so the peer's checks cannot see it.

Attack (the coordinator, racing its own pump requests; the feed side was made atomic for R15-RR22-10, the drain
side was not): `Tunnel.drain` takes frames from the outgoing queue under the tunnel's lock, then builds the
envelope and reads-and-increments `_seq_out` after releasing it. A pump that took a large frame (joined and
sealed for milliseconds) and a second pump that takes the next small frame race for the counter: the later
bytes can get the lower sequence number. The peer feeds envelopes in sequence order, so it hands its spu the
stream's bytes reordered, with every envelope authentic and in sequence: the tunnel's promise (a reordered
envelope stops the run) does not hold for reordering the party itself was tricked into. Low severity while the
deployed gRPC party answers one request at a time (as R15-RR22-10); the test plays the party's own spu by
queueing frames as its reader thread does.

Expected safe behaviour: frames are taken and numbered under one lock (the sequence number assigned when the
frames leave the queue), so sequence order is queue order whatever the pumps' timing.

Fixed: `Tunnel.drain` reads and advances `_seq_out` in the same ``with self._cond`` block that pops the frames;
only joining and sealing happen outside the lock. The test runs all 40 tries without an inversion.
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.vertical.psi_rr22_tunnel import DATA, Tunnel


@pytest.mark.slow
def test_envelopes_are_numbered_in_the_order_their_frames_left_the_queue() -> None:
    keys = {n: PartyKeys.generate() for n in ("bank", "pay")}
    public = {n: k.public_bytes for n, k in keys.items()}
    ch = {n: SealedChannels(n, keys[n], public, "run-r15b") for n in keys}
    session = os.urandom(16)
    bank = Tunnel("bank", "pay", session, lambda x: ch["bank"].seal_arrays("pay", x),
                  lambda e: ch["bank"].open_arrays("pay", e), target_port=1)
    big = bytes(16 << 20)
    switch = sys.getswitchinterval()
    inverted = 0
    try:
        sys.setswitchinterval(1e-6)
        for trial in range(40):
            with bank._cond:
                bank._push(1, 1, DATA, big)  # a large message of the bank's spu, queued by its reader
            got: dict[str, np.ndarray] = {}

            def pump(got: dict[str, np.ndarray] = got) -> None:
                got["big"] = bank.drain(0.0)  # type: ignore[assignment]
            first = threading.Thread(target=pump)
            first.start()
            while True:  # the first pump has taken the large frame
                with bank._cond:
                    if not bank._out:
                        bank._push(1, 1, DATA, b"%06d" % trial)  # the next, small message
                        break
            got["small"] = bank.drain(1.0)  # type: ignore[assignment]
            first.join()
            seqs = {k: int(ch["pay"].open_arrays("bank", v)["seq"][0]) for k, v in got.items()}
            if seqs["small"] < seqs["big"]:
                inverted += 1
                break
    finally:
        sys.setswitchinterval(switch)
        bank.close()
    assert inverted == 0, "later bytes of the bank's spu went out under an earlier sequence number"
