"""R15-RR22-6: a frame table whose lengths do not describe the data is accepted (negative / wrapping lengths).

Attack: the partner seals an envelope whose frame table (``head``, uint64) has lengths that only SUM to the data
size: a length of 2^64 - 5 is -5 after ``astype(np.int64)`` (psi_rr22_tunnel.py:220), so ``[10, -5]`` passes
the ``lengths.sum() == len(data)`` check for 5 bytes of data; slices then overlap or run backwards (Python
clamps them), so frames are delivered with other lengths than declared. The module docstring promises that "a
malformed frame table stops the tunnel (`TunnelError`)". Low severity (the partner controls its own bytes
anyway), but the parser accepts frame tables that no honest tunnel writes, and the check is the only guard
between peer-chosen integers and slicing.

Expected safe behaviour: TunnelError for any length that is negative as int64 / exceeds the data, i.e. lengths
checked each, not only their sum.
Fixed: each length is checked against the data size (and origin, kind, frame count) before the sum.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.vertical.psi_rr22_tunnel import DATA, OPEN, Tunnel, TunnelError


def test_a_frame_table_with_wrapped_lengths_is_refused() -> None:
    keys = {n: PartyKeys.generate() for n in ("bank", "pay")}
    public = {n: k.public_bytes for n, k in keys.items()}
    ch = {n: SealedChannels(n, keys[n], public, "run-r15") for n in keys}
    session = np.frombuffer(os.urandom(16), dtype=np.uint8).copy()
    bank = Tunnel("bank", "pay", session.tobytes(), lambda x: ch["bank"].seal_arrays("pay", x),
                  lambda e: ch["bank"].open_arrays("pay", e), target_port=1)
    head = np.array([[0, 3, OPEN, 0], [0, 3, DATA, 10], [0, 3, DATA, (1 << 64) - 5]], dtype=np.uint64)
    envelope = ch["pay"].seal_arrays("bank", {"session": session, "seq": np.array([0], dtype=np.uint64),
                                              "head": head, "data": np.frombuffer(b"12345", dtype=np.uint8)})
    try:
        with pytest.raises(TunnelError, match="malformed"):
            bank.feed(envelope)
    finally:
        bank.close()
