"""R15-PSI (noted with R15-PSI-3): repeated points from a peer must not push matching onto a Python dict per token.

`match_tokens` falls back to an exact match when two of y's tokens share a 64-bit prefix. A peer controls such
a tie at will (a label holder repeating one row of ``peer_points`` in mode both, a partner repeating one of its
points), and the fallback used to build a dict of 32-byte strings over every token: a Python object per
token and 386 bytes per token at peak (measured at 200k: ~4 GB at 10M), on a path no honest run takes.

Safe behaviour asserted here: the exact path is vectorised (one stable sort on the tokens' four 64-bit words):
memory stays within the fast path's order (< 100 bytes per token of x and y, measured 72; never a Python object
per token), and it gives the old rule's result (canonical token order, then x index); for a token y repeats it names the
lowest y index (the old dict kept the last one).
"""

from __future__ import annotations

import tracemalloc

import numpy as np

from sampan.vertical.psi_points import match_tokens


def _reference(x: np.ndarray, y: np.ndarray) -> tuple[list[int], list[int]]:
    xb, yb = x.tobytes(), y.tobytes()
    where: dict[bytes, int] = {}
    for j in range(len(y)):
        where.setdefault(yb[j * 32:(j + 1) * 32], j)
    pairs = sorted((t, i, where[t]) for i in range(len(x)) if (t := xb[i * 32:(i + 1) * 32]) in where)
    return [i for _, i, _ in pairs], [j for _, _, j in pairs]


def test_repeated_peer_points_match_exactly() -> None:
    rng = np.random.default_rng(15)
    for _ in range(10):
        x = rng.integers(0, 256, (300, 32), dtype=np.uint8)
        x[:5, 31] = 0  # trailing zero bytes sort like any other byte
        x[10:20, :8] = x[9, :8]  # one prefix, different tails
        y = np.concatenate([x[100:250], x[:30], x[:3], rng.integers(0, 256, (50, 32), dtype=np.uint8)])
        y = y[rng.permutation(len(y))]
        x2 = np.vstack([x, x[:50]])  # repeats on both sides
        for a, b in ((x, y), (x2, y)):
            ix, iy = match_tokens(a, b)
            assert (ix.tolist(), iy.tolist()) == _reference(a, b)


def test_repeated_peer_points_keep_matching_memory_per_token_bounded() -> None:
    rng = np.random.default_rng(3)
    n = 200_000
    y = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    y[1] = y[0]  # one repeated point forces the exact path
    x = np.ascontiguousarray(y[rng.permutation(n)])
    tracemalloc.start()
    try:
        ix, iy = match_tokens(x, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(ix) == n and np.array_equal(x[ix], y[iy])
    assert peak < 100 * 2 * n, f"{peak / (2 * n):.0f} bytes per token of x and y"
