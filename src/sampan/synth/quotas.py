"""Integer quotas and sample selection for programmable statistics: exact marginals from rounded counts.

Why apart: the arithmetic (largest-remainder and controlled rounding, raking, PPS systematic sampling) is
independent of the model and the constraints that `sampan.synth.programmable` honours with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["joint_quotas", "quotas"]


def quotas(probs: np.ndarray, n: int) -> np.ndarray:
    """Integer counts summing to n, as close to n * probs as possible (largest remainder)."""
    raw = np.asarray(probs, dtype=np.float64) * n
    base = np.floor(raw).astype(np.int64)
    short = n - int(base.sum())
    if short > 0:
        base[np.argsort(-(raw - base), kind="stable")[:short]] += 1
    return base


def joint_quotas(joint: np.ndarray, n: int, row_probs: np.ndarray, col_probs: np.ndarray) -> np.ndarray:
    """Integer (rows, cols) counts close to ``n * joint`` whose row and column sums are exactly the
    largest-remainder quotas of ``row_probs`` and ``col_probs`` (controlled rounding).

    Rounding each cell on its own can leave a margin one off (121 defaults where 120 were asked for);
    here the joint is first fitted to the integer margins, floored, and the remaining units placed one
    per cell by augmenting paths in the bipartite (row, column) graph, preferring large remainders.
    """
    rows, cols = quotas(row_probs, n), quotas(col_probs, n)
    x = np.maximum(np.asarray(joint, dtype=np.float64).reshape(len(rows), len(cols)), 1e-12)
    for _ in range(100):
        x *= (rows / np.maximum(x.sum(1), 1e-300))[:, None]
        x *= (cols / np.maximum(x.sum(0), 1e-300))[None, :]
    base = np.floor(x + 1e-9).astype(np.int64)
    need_r, need_c = rows - base.sum(1), cols - base.sum(0)
    extra = np.zeros_like(base)
    for flat in np.argsort(-(x - base), axis=None, kind="stable"):
        i, j = divmod(int(flat), len(cols))
        if need_r[i] > 0 and need_c[j] > 0:
            extra[i, j], need_r[i], need_c[j] = 1, need_r[i] - 1, need_c[j] - 1
    while need_r.sum() > 0:  # augmenting path: row -> col over a free cell, col -> row over a used cell
        start = int(np.flatnonzero(need_r > 0)[0])
        parent: dict[tuple[str, int], tuple[str, int] | None] = {("r", start): None}
        queue, end = [("r", start)], None
        while queue and end is None:
            kind, k = queue.pop(0)
            nxt = ([("c", j) for j in range(len(cols)) if extra[k, j] == 0] if kind == "r"
                   else [("r", i) for i in range(len(rows)) if extra[i, k] == 1])
            for node in nxt:
                if node not in parent:
                    parent[node] = (kind, k)
                    if node[0] == "c" and need_c[node[1]] > 0:
                        end = node
                        break
                    queue.append(node)
        if end is None:  # cannot happen for margins that sum to n; guard against an endless loop
            raise RuntimeError("controlled rounding found no augmenting path")
        node = end
        while (prev := parent[node]) is not None:
            if node[0] == "c":
                extra[prev[1], node[1]] = 1
            else:
                extra[node[1], prev[1]] = 0
            node = prev
        need_r[start] -= 1
        need_c[end[1]] -= 1
    return (base + extra).reshape(-1)


def _rake(weights: np.ndarray, indices: Sequence[np.ndarray], targets: Sequence[np.ndarray],
          iters: int = 30) -> np.ndarray:
    w = weights.copy()
    for _ in range(iters):
        for idx, p in zip(indices, targets, strict=False):
            current = np.bincount(idx, weights=w, minlength=p.size)
            factor = np.divide(p * w.sum(), current, out=np.zeros_like(p), where=current > 0)
            w *= factor[idx]
    return w


def _pps_systematic(weights: np.ndarray, q: int, rng: np.random.Generator) -> np.ndarray:
    """``q`` distinct indices, index i included with probability proportional to its weight (capped at 1).

    Systematic sampling over a random order: the raked weights translate into inclusion probabilities
    exactly, which a weighted draw without replacement does not do once q is a sizeable share.
    """
    n = weights.size
    if q >= n:
        return np.arange(n)
    w = np.maximum(np.asarray(weights, dtype=np.float64), 0.0) + 1e-12
    pi = q * w / w.sum()
    for _ in range(n):
        over = pi > 1.0
        if not over.any():
            break
        pi[over] = 1.0
        free = ~over & (pi < 1.0)
        pi[free] = (q - over.sum() - (pi[~free & ~over]).sum()) * w[free] / w[free].sum()
    order = rng.permutation(n)
    cum = np.cumsum(pi[order])
    picks = np.searchsorted(cum, rng.random() + np.arange(q), side="right")
    return np.unique(order[np.minimum(picks, n - 1)])[:q]
