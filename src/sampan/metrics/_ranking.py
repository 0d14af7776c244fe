"""Ranking metrics computed from per-score-group counts of positives and negatives.

Both the exact metrics (one group per distinct score) and the federated histogram (one group per bin)
reduce to the same counts, so they share these functions and cannot drift apart. Groups are ordered by
ascending score; examples inside a group are treated as tied.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray


class ScoreGroups(NamedTuple):
    """Examples grouped by score: one row per group, ascending score."""

    thresholds: NDArray[np.float64]
    pos: NDArray[np.int64]
    neg: NDArray[np.int64]


def group_by_score(y: NDArray[np.int64], p: NDArray[np.float64]) -> ScoreGroups:
    """Group validated labels by distinct score in O(n log n) (one sort)."""
    order = np.argsort(p)
    sorted_p = p[order]
    sorted_y = y[order]
    is_start = np.empty(sorted_p.shape[0], dtype=bool)
    is_start[0] = True
    np.not_equal(sorted_p[1:], sorted_p[:-1], out=is_start[1:])
    starts = np.flatnonzero(is_start)
    sizes = np.diff(np.append(starts, sorted_p.shape[0]))
    pos = np.add.reduceat(sorted_y, starts).astype(np.int64, copy=False)
    return ScoreGroups(sorted_p[starts], pos, sizes - pos)


def auc_from_groups(pos: NDArray[np.int64], neg: NDArray[np.int64]) -> float:
    """Mann–Whitney U / (P·N) with ties counted as one half, in exact integer arithmetic.

    A positive beats every negative in a lower group and half-beats each negative in its own group,
    which is exactly the mid-rank formula. int64 is exact up to about 4e9 examples.
    """
    n_pos = int(pos.sum())
    n_neg = int(neg.sum())
    neg_below = np.cumsum(neg) - neg
    twice_u = int(np.dot(pos, 2 * neg_below + neg))
    return twice_u / (2.0 * n_pos * n_neg)


def auc_tie_bound(pos: NDArray[np.int64], neg: NDArray[np.int64]) -> float:
    """Largest possible AUC change from resolving the ties inside groups (half the tied pair mass)."""
    n_pos = int(pos.sum())
    n_neg = int(neg.sum())
    return float(np.dot(pos, neg)) / (2.0 * n_pos * n_neg)


def roc_from_groups(
    thresholds: NDArray[np.float64], pos: NDArray[np.int64], neg: NDArray[np.int64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(fpr, tpr, thresholds) for 'score >= threshold', thresholds descending, starting at (0, 0, inf)."""
    keep = (pos + neg) > 0
    tps = np.concatenate(([0], np.cumsum(pos[keep][::-1])))
    fps = np.concatenate(([0], np.cumsum(neg[keep][::-1])))
    thr = np.concatenate(([np.inf], thresholds[keep][::-1])).astype(np.float64)
    return fps / fps[-1], tps / tps[-1], thr


def average_precision_from_groups(pos: NDArray[np.int64], neg: NDArray[np.int64]) -> float:
    """Sum over thresholds (descending) of (R_k − R_{k−1})·P_k — scikit-learn's definition, no interpolation."""
    keep = (pos + neg) > 0
    pos_desc = pos[keep][::-1]
    tps = np.cumsum(pos_desc)
    fps = np.cumsum(neg[keep][::-1])
    precision = tps / (tps + fps)
    return float(np.dot(pos_desc, precision) / tps[-1])


def ks_from_groups(pos: NDArray[np.int64], neg: NDArray[np.int64]) -> float:
    """Largest vertical gap between the cumulative score distributions of positives and negatives."""
    tpr = np.cumsum(pos) / pos.sum()
    fpr = np.cumsum(neg) / neg.sum()
    return float(np.max(np.abs(tpr - fpr)))
