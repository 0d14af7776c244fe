"""`_arrow_checks.id_hashes`: the vectorised FNV-1a equals a plain per-byte reference, for any id lengths
(rows walked in order of length, so one very long id costs its own bytes, not rows x its length)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from sampan.data._arrow_checks import _FNV_OFFSET, _FNV_PRIME, id_hashes

MASK = 2**64 - 1


def _reference(text: pa.Array) -> np.ndarray:
    out = []
    for s in text.to_pylist():
        b = s.encode()
        h = int(_FNV_OFFSET)
        for c in b:
            h = ((h ^ c) * int(_FNV_PRIME)) & MASK
        h ^= (len(b) * 0x9E3779B97F4A7C15) & MASK
        h ^= h >> 33
        h = (h * 0xFF51AFD7ED558CCD) & MASK
        h ^= h >> 33
        out.append(h)
    return np.array(out, dtype=np.uint64)


def test_hashes_match_the_per_byte_reference() -> None:
    text = pa.array(["", "a", "abc", "C0001", "héllo", "x" * 50, "", "zz", "a"])
    assert (id_hashes(text) == _reference(text)).all()
    assert (id_hashes(text.slice(2, 5)) == _reference(text.slice(2, 5))).all()  # an offset into the buffers
    assert id_hashes(text)[1] == id_hashes(text)[8]


def test_one_long_id_among_many_short_ones() -> None:
    text = pa.array([f"C{i:08d}" for i in range(20_000)] + ["L" * 20_000])
    got = id_hashes(text)
    assert (got[-3:] == _reference(text.slice(len(text) - 3))).all()
    assert np.unique(got).size == len(text)
