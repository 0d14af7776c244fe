"""Secure vertical LR, the masked-feature streams: E = X - U and Ev = Xv - Uv in sealed, instance-bound chunks.

Why apart: a party's masked features travel in chunks of `secure_lr_encode.E_CHUNK_ROWS` rows (`vlr.e_chunk`),
so no sender, relay or receiver holds a whole-table envelope; the receiving holder places each chunk, in order,
into the one ring array it keeps per party. The seal binds a chunk to the run and the direction, not to the
training: a coordinator could keep a chunk of one training and relay it in a later one of the same run (a
resume, the scorecard's LR), and the holder would compute on rows padded with a stale pad (garbage that ends
as "training diverged", blaming the configuration). So every chunk carries, inside the seal, a binding to its
instance: E to the coordinator's instance nonce (which each party admits once per run, `LRRuns`), Ev to the
final instance (that nonce mixed with every holder's own fresh nonce); a chunk of another instance is refused,
naming the splice. Left: a coordinator that hands two parties different nonces has that training refused at
its first chunk, and can replay a whole stream of it (every chunk, consistently) into a later training that
gives the receiver the same nonce; the rows then carry a pad the dealer (the coordinator) already knows, so no
privacy is lost, but training integrity rests on the dealer, as `secure_lr` states.

What each role learns: nothing beyond `sampan.vertical.secure_lr` (E and Ev are one-time padded); the binding is
a hash of nonces the receiver already holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from sampan.vertical.secure_lr_base import _TrainState

__all__ = ["chunk_binding", "chunk_row", "store_chunks"]

_PARTS = ("E", "Ev")  # training rows (before the validation order exists), validation rows (in position order)


def chunk_binding(instance: str, part: str) -> np.ndarray:
    """16 bytes naming one stream (`part` of one instance), sealed inside each of its chunks."""
    digest = hashlib.sha256(f"sampan/vlr/e_chunk|{part}|{instance}".encode()).digest()[:16]
    return np.frombuffer(digest, dtype=np.uint8)


def chunk_row(me: str, meta: Mapping[str, Any], n: int, chunk_rows: int, part: str) -> int:
    """The first row of a requested chunk: an int (not a bool, not a float), inside (0, n), on a chunk boundary."""
    lo = meta.get("lo")
    if isinstance(lo, bool) or not isinstance(lo, (int, np.integer)):
        raise ValueError(f"party {me!r}: refusing a masked-feature chunk request: field 'lo' must be a whole row "
                         f"number, got {lo!r}")
    lo = int(lo)
    if not 0 < lo < n or lo % chunk_rows:
        raise ValueError(f"party {me!r}: refusing a masked-feature chunk at row {lo} ({part}: {n} rows, chunks of "
                         f"{chunk_rows})")
    return lo


def store_chunks(me: str, st: _TrainState) -> None:
    """Place each arrived chunk of a party's E (holders) or Ev (co-holders), in order, into the ring array kept
    for it; refuse a chunk bound to another instance or arriving out of order."""
    for part in _PARTS:
        validation = part == "Ev"
        store, nxt = (st.E_val, st.ev_next) if validation else (st.E, st.e_next)
        n = (st.Xv_int if validation else st.X_int).shape[0]
        expected = chunk_binding(st.instance if validation else st.setup_instance, part)
        for sender in [k[0] for k in st.inbox if k[1] == part]:
            chunk = st.inbox.pop((sender, part))
            lo_field = st.inbox.pop((sender, f"{part}_lo"), None)
            bind = st.inbox.pop((sender, f"{part}_bind"), None)
            lo = int(lo_field[0]) if lo_field is not None and lo_field.shape == (1,) else -1
            if bind is None or not np.array_equal(bind, expected):
                raise ValueError(
                    f"party {me!r}: refusing the masked-feature chunk ({part}) from {sender!r} at row {lo}: it "
                    "belongs to another secure-LR instance; the coordinator relayed a chunk of an earlier training "
                    "in place of this one's")
            if sender not in store:
                if chunk.ndim != 2:
                    raise ValueError(f"party {me!r}: the masked features ({part}) from {sender!r} have the wrong shape")
                store[sender], nxt[sender] = np.empty((n, chunk.shape[1]), dtype=np.uint64), 0
            E = store[sender]
            if lo != nxt[sender] or chunk.ndim != 2 or chunk.shape[1] != E.shape[1] or lo + len(chunk) > n:
                raise ValueError(f"party {me!r}: the masked features ({part}) from {sender!r} arrived out of order "
                                 "or with the wrong shape")
            E[lo:lo + len(chunk)] = chunk
            nxt[sender] = lo + len(chunk)
