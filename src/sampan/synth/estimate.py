"""From noisy marginals to a consistent model: pure post-processing, no records involved.

The model is a Bayesian network over model bins: the label ``y`` is the root, each feature ``j`` has
``y`` and (for non-root features of the tree) one parent feature ``p`` as parents, i.e. a tree-augmented
naive Bayes. Only 2-way marginals are measured: ``(y, j)`` for every feature and ``(j, p')`` for every
tree edge (``p'``: the parent's bins, merged when the table would be too noisy). Estimation:

1. the label counts are the inverse-variance average of their own release and the ``(y, j)`` tables;
2. each ``(y, j)`` table is fitted to the label counts and to the inverse-variance average of its
   column sums and the 1-way release of ``j``: least-squares additive projection onto those totals,
   Norm-Sub (subtract a constant, clip at zero: the noise on empty cells must not become mass), then
   iterative proportional fitting (IPF) to restore the totals exactly;
3. each ``(j, p')`` table is shrunk towards independence (James-Stein: the weight on the dependence is
   its estimated signal share after subtracting the known noise energy) and fitted the same way to
   the ``j`` and ``p'`` totals of step 2;
4. the clique ``(y, j, p')`` is the maximum-entropy table with the three fitted 2-way margins (IPF from
   uniform, as a graphical model would infer it), and the conditionals P(j | y, p') are read off it.

Sampling along the tree from these tables reproduces every fitted ``(y, j)`` margin and, up to IPF
convergence, every ``(j, p')`` margin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FittedTables", "PairMeasurement", "estimate_tables", "fit_label_margins", "fit_margins", "max_entropy_3way",
           "norm_sub"]

_IPF_ITERS = 50


@dataclass
class PairMeasurement:
    """A noisy (feature bins, parent groups) table and the noise variance of each cell."""

    feature: str
    parent: str
    coarsen: np.ndarray  # parent bin -> group
    table: np.ndarray
    variance: float


@dataclass
class FittedTables:
    """What sampling needs: label distribution and one conditional table per feature."""

    p_label: np.ndarray  # (L,)
    conditionals: dict[str, np.ndarray]  # feature -> (L, groups of parent or 1, bins of feature)
    margins: dict[str, np.ndarray]  # feature -> fitted (L, bins) counts
    n_hat: float
    shrinkage: dict[str, float] = field(default_factory=dict)  # feature -> weight kept on its edge's dependence


def norm_sub(x: np.ndarray, total: float) -> np.ndarray:
    """Non-negative array summing to ``total``: subtract one constant from every cell and clip at zero.

    Why not plain clipping: noise on the many empty cells of a sparse histogram is half positive, and
    clipping keeps that half, spreading spurious mass everywhere. Subtracting a common constant (the
    "Norm-Sub" post-processing of PrivSyn, Zhang et al. 2021) removes it while keeping the total.
    """
    flat = np.asarray(x, dtype=np.float64).ravel()
    if total <= 0 or flat.size == 0:
        return np.zeros(np.shape(x))
    s = np.sort(flat)[::-1]
    k = np.arange(1, s.size + 1)
    shift = (np.cumsum(s) - total) / k
    valid = np.flatnonzero(s > shift)
    delta = shift[valid[-1]] if valid.size else shift[-1]
    return np.maximum(np.asarray(x, dtype=np.float64) - delta, 0.0)


def _project_additive(a: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Least-squares change of a 2-D table to given row and column sums (equal totals)."""
    r, c = a.shape
    total = rows.sum()
    return (a + (rows - a.sum(1))[:, None] / c + (cols - a.sum(0))[None, :] / r
            - (total - a.sum()) / (r * c))


def _ipf2(out: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    total = max(rows.sum(), 1e-300)
    for _ in range(_IPF_ITERS):
        rs = out.sum(1)
        out *= np.divide(rows, rs, out=np.zeros_like(rs), where=rs > 0)[:, None]
        cs = out.sum(0)
        out *= np.divide(cols, cs, out=np.zeros_like(cs), where=cs > 0)[None, :]
        if np.abs(out.sum(1) - rows).max() <= 1e-6 * max(total, 1.0):
            break
    return out


def fit_margins(a: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Non-negative table with the given row and column sums: projection, Norm-Sub, then IPF."""
    rows = np.maximum(np.asarray(rows, np.float64), 0.0)
    cols = np.maximum(np.asarray(cols, np.float64), 0.0)
    total = rows.sum()
    if total <= 0:
        return np.zeros_like(a, dtype=np.float64)
    cols = cols * (total / cols.sum()) if cols.sum() > 0 else np.full(cols.shape, total / cols.size)
    out = norm_sub(_project_additive(np.asarray(a, np.float64), rows, cols), total)
    out += 1e-9 * np.outer(rows, cols) / total  # a zero row/column with a positive target stays reachable
    return _ipf2(out, rows, cols)


def _shrink(table: np.ndarray, variance: float) -> tuple[np.ndarray, float]:
    """James-Stein shrinkage of a 2-D table towards the independence table of its own margins."""
    pos = np.maximum(table, 0.0)
    total = pos.sum()
    base = np.outer(pos.sum(1), pos.sum(0)) / total if total > 0 else np.zeros_like(table)
    dev = table - base
    energy = float((dev**2).sum())
    k, g = table.shape
    noise = variance * max(k - 1, 0) * max(g - 1, 0)
    weight = 0.0 if energy <= 0 else float(np.clip((energy - noise) / energy, 0.0, 1.0))
    return base + weight * dev, weight


def _combine(estimates: Sequence[tuple[np.ndarray, np.ndarray | float]]) -> np.ndarray:
    """Inverse-variance weighted average of estimates of the same vector (per-cell variances allowed)."""
    weights = [1.0 / np.maximum(np.asarray(v, np.float64), 1e-12) for _, v in estimates]
    return sum(w * e for w, (e, _) in zip(weights, estimates, strict=False)) / sum(weights)


def max_entropy_3way(yj: np.ndarray, yp: np.ndarray, jp: np.ndarray, iters: int = _IPF_ITERS) -> np.ndarray:
    """(L, j, p) table with the three given 2-way margins and nothing else (IPF from uniform)."""
    cy = yj.sum(1)
    t = np.where(cy[:, None, None] > 0,
                 yj[:, :, None] * yp[:, None, :] / np.maximum(cy[:, None, None], 1e-300), 0.0)
    t += 1e-12
    for _ in range(iters):
        s = t.sum(0)
        t *= np.divide(jp, s, out=np.zeros_like(s), where=s > 0)[None]
        s = t.sum(2)
        t *= np.divide(yj, s, out=np.zeros_like(s), where=s > 0)[:, :, None]
        s = t.sum(1)
        t *= np.divide(yp, s, out=np.zeros_like(s), where=s > 0)[:, None, :]
    return t


def fit_label_margins(
    label_counts: np.ndarray,
    label_variance: float,
    one_ways: Mapping[str, tuple[np.ndarray, np.ndarray]],
    label_pairs: Mapping[str, tuple[np.ndarray, np.ndarray | float]],
    order: Sequence[str],
    shrink: bool = True,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Steps 1-2: label counts and every feature's fitted (L, bins) table."""
    L = label_counts.size
    sources: list[tuple[np.ndarray, np.ndarray | float]] = [(np.asarray(label_counts, np.float64), label_variance)]
    for table, var in label_pairs.values():
        sources.append((table.sum(1), float(np.sum(np.broadcast_to(var, table.shape[1:])))))
    combined = _combine(sources)
    n_hat = max(float(combined.sum()), 1.0)
    c_y = norm_sub(combined, n_hat)
    margins: dict[str, np.ndarray] = {}
    for name in order:
        if name in label_pairs:
            table, var = label_pairs[name]
            col_sums: list[tuple[np.ndarray, np.ndarray | float]] = [(table.sum(0), L * np.asarray(var))]
            if name in one_ways:
                col_sums.append(one_ways[name])
            cols = _combine(col_sums)
            if shrink:
                table, _ = _shrink(table, float(np.mean(var)))
            margins[name] = fit_margins(table, c_y, norm_sub(cols, n_hat))
        else:  # no label (L == 1) and a binned column: its 1-way is the margin
            margins[name] = norm_sub(one_ways[name][0], n_hat)[None, :]
    return c_y, margins


def estimate_tables(
    label_counts: np.ndarray,
    label_variance: float,
    one_ways: Mapping[str, tuple[np.ndarray, np.ndarray]],
    label_pairs: Mapping[str, tuple[np.ndarray, np.ndarray | float]],
    pairs: Mapping[str, PairMeasurement],
    order: Sequence[str],
    shrink_label_pairs: bool = True,
) -> FittedTables:
    """Consistent conditionals from noisy releases (see module doc).

    ``one_ways``: feature -> (counts, per-cell variances); ``label_pairs``: feature -> ((L, bins) table,
    cell variance), empty when the table has no label; ``pairs``: child feature -> its edge's table.
    """
    c_y, margins = fit_label_margins(label_counts, label_variance, one_ways, label_pairs, order, shrink_label_pairs)
    L, n_hat = c_y.size, float(c_y.sum())

    shrinkage: dict[str, float] = {}
    conditionals: dict[str, np.ndarray] = {}
    for name in order:
        own = margins[name]
        fallback = own / np.maximum(own.sum(1, keepdims=True), 1e-300)
        fallback[own.sum(1) <= 0] = 1.0 / own.shape[1]
        m = pairs.get(name)
        if m is None:
            conditionals[name] = fallback[:, None, :].copy()
            continue
        groups = int(m.coarsen.max()) + 1
        parent_margin = np.zeros((L, groups))
        np.add.at(parent_margin.T, m.coarsen, margins[m.parent].T)
        shrunk, shrinkage[name] = _shrink(m.table, m.variance)
        jp = fit_margins(shrunk, own.sum(0), parent_margin.sum(0))
        t = max_entropy_3way(own, parent_margin, jp)  # (L, bins, groups)
        sums = t.sum(1)
        cond = np.where(sums[:, None, :] > 0, t / np.maximum(sums[:, None, :], 1e-300), fallback[:, :, None])
        conditionals[name] = np.transpose(cond, (0, 2, 1)).copy()  # (L, groups, bins)
    return FittedTables(c_y / n_hat, conditionals, margins, n_hat, shrinkage)
