"""Binary classification metrics for credit and fraud models, numpy only.

Ranking metrics (AUC, ROC, PR-AUC, KS) accept any real-valued score — probabilities, logits or
scorecard points — because they only depend on the ordering. Metrics that read the score as a
probability (Brier, log loss, calibration, ECE) require values in [0, 1]. Every function validates
its inputs and raises ValueError with the reason rather than returning NaN.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sampan.metrics._ranking import (
    ScoreGroups,
    auc_from_groups,
    average_precision_from_groups,
    group_by_score,
    ks_from_groups,
    roc_from_groups,
)
from sampan.metrics._validation import check_binary, require_both_classes

__all__ = [
    "CalibrationCurve",
    "binary_metrics",
    "brier_score",
    "calibration_curve",
    "expected_calibration_error",
    "ks_statistic",
    "log_loss",
    "pr_auc",
    "roc_auc",
    "roc_curve",
]


class CalibrationCurve(NamedTuple):
    """Reliability diagram data: one entry per non-empty bin, in ascending bin order."""

    mean_predicted: NDArray[np.float64]
    fraction_positive: NDArray[np.float64]
    counts: NDArray[np.int64]


def _groups(y: ArrayLike, p: ArrayLike, metric: str) -> ScoreGroups:
    labels, scores = check_binary(y, p, probabilities=False)
    groups = group_by_score(labels, scores)
    require_both_classes(int(groups.pos.sum()), int(groups.neg.sum()), metric)
    return groups


def roc_auc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the ROC curve: P(score of a random positive > a random negative), ties count 1/2."""
    groups = _groups(y, p, "ROC AUC")
    return auc_from_groups(groups.pos, groups.neg)


def roc_curve(
    y: ArrayLike, p: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(fpr, tpr, thresholds) for the rule 'score >= threshold'.

    One point per distinct score, thresholds descending, plus a leading (0, 0) point at threshold
    +inf, so the curve always runs from (0, 0) to (1, 1). Collinear points are kept.
    """
    groups = _groups(y, p, "ROC curve")
    return roc_from_groups(groups.thresholds, groups.pos, groups.neg)


def pr_auc(y: ArrayLike, p: ArrayLike) -> float:
    """Average precision (scikit-learn's definition): Σ (R_k − R_{k−1}) · P_k over distinct thresholds.

    Step-wise, not trapezoidal, so it is not optimistic. Needs at least one positive; with no
    negatives it is 1.0.
    """
    labels, scores = check_binary(y, p, probabilities=False)
    groups = group_by_score(labels, scores)
    if int(groups.pos.sum()) == 0:
        raise ValueError("PR AUC is undefined when y has no positive (1) labels")
    return average_precision_from_groups(groups.pos, groups.neg)


def ks_statistic(y: ArrayLike, p: ArrayLike) -> float:
    """Kolmogorov–Smirnov statistic: max |TPR − FPR| over all thresholds (credit-scoring KS)."""
    groups = _groups(y, p, "KS statistic")
    return ks_from_groups(groups.pos, groups.neg)


def brier_score(y: ArrayLike, p: ArrayLike) -> float:
    """Mean squared error of the probabilities; rewards both calibration and sharpness."""
    labels, probs = check_binary(y, p)
    return float(np.mean((probs - labels) ** 2))


def log_loss(y: ArrayLike, p: ArrayLike, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood; probabilities are clipped to [eps, 1 − eps] so 0/1 stay finite."""
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    labels, probs = check_binary(y, p)
    return _mean_log_loss(labels, probs, eps)


def _mean_log_loss(labels: NDArray[np.int64], probs: NDArray[np.float64], eps: float) -> float:
    clipped = np.clip(probs, eps, 1.0 - eps)
    return float(-np.mean(np.where(labels == 1, np.log(clipped), np.log1p(-clipped))))


def bin_index(p: NDArray[np.float64], edges: NDArray[np.float64]) -> NDArray[np.intp]:
    """Bin of each value for bins [e_i, e_{i+1}), the last one closed at the top."""
    return np.clip(np.searchsorted(edges, p, side="right") - 1, 0, edges.shape[0] - 2)


def uniform_bin_index(p: NDArray[np.float64], n_bins: int) -> NDArray[np.intp]:
    """Equal-width bin of each probability: floor(p·n_bins), with p = 1 in the last bin.

    Defined by arithmetic rather than by comparing with linspace edges, so every party computes the
    same bins bit for bit, and it is ~20x faster than a search on 1e6 scores.
    """
    return np.minimum((p * n_bins).astype(np.intp), n_bins - 1)


def calibration_from_sums(
    counts: NDArray[np.int64], sum_p: NDArray[np.float64], sum_y: NDArray[np.float64]
) -> CalibrationCurve:
    """Build a curve from per-bin totals, dropping empty bins (shared with the federated histogram)."""
    filled = counts > 0
    n = counts[filled]
    return CalibrationCurve(sum_p[filled] / n, sum_y[filled] / n, n.astype(np.int64))


def _check_n_bins(n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")


def _calibration(
    labels: NDArray[np.int64], probs: NDArray[np.float64], n_bins: int, strategy: str
) -> CalibrationCurve:
    _check_n_bins(n_bins)
    if strategy == "uniform":
        idx = uniform_bin_index(probs, n_bins)
    elif strategy == "quantile":
        idx = bin_index(probs, np.quantile(probs, np.linspace(0.0, 1.0, n_bins + 1)))
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    counts = np.bincount(idx, minlength=n_bins).astype(np.int64)
    sum_p = np.bincount(idx, weights=probs, minlength=n_bins).astype(np.float64, copy=False)
    sum_y = np.bincount(idx, weights=labels, minlength=n_bins).astype(np.float64, copy=False)
    return calibration_from_sums(counts, sum_p, sum_y)


def calibration_curve(
    y: ArrayLike,
    p: ArrayLike,
    n_bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "uniform",
) -> CalibrationCurve:
    """Mean predicted probability vs observed positive rate per bin; empty bins are skipped.

    'uniform' uses equal-width bins on [0, 1]; 'quantile' uses bins holding roughly equal numbers of
    examples (fewer bins when scores are heavily tied). Bins are [a, b), the last one [a, b].
    """
    labels, probs = check_binary(y, p)
    return _calibration(labels, probs, n_bins, strategy)


def ece_from_curve(curve: CalibrationCurve) -> float:
    """Count-weighted mean |observed rate − mean prediction| over the bins of a curve."""
    total = curve.counts.sum()
    gaps = np.abs(curve.fraction_positive - curve.mean_predicted)
    return float(np.dot(curve.counts, gaps) / total)


def expected_calibration_error(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> float:
    """ECE over equal-width bins: how far, on average, predicted PDs are from observed default rates."""
    labels, probs = check_binary(y, p)
    return ece_from_curve(_calibration(labels, probs, n_bins, "uniform"))


def binary_metrics(y: ArrayLike, p: ArrayLike) -> dict[str, float]:
    """The standard evaluation set for a binary model, from one validation pass and one sort.

    Keys: auc, pr_auc, ks, brier, log_loss, ece, n, positive_rate. Raises ValueError when y holds a
    single class, because AUC and KS are then undefined.
    """
    labels, probs = check_binary(y, p)
    groups = group_by_score(labels, probs)
    require_both_classes(int(groups.pos.sum()), int(groups.neg.sum()), "ROC AUC")
    return {
        "auc": auc_from_groups(groups.pos, groups.neg),
        "pr_auc": average_precision_from_groups(groups.pos, groups.neg),
        "ks": ks_from_groups(groups.pos, groups.neg),
        "brier": float(np.mean((probs - labels) ** 2)),
        "log_loss": _mean_log_loss(labels, probs, 1e-12),
        "ece": ece_from_curve(_calibration(labels, probs, 10, "uniform")),
        "n": float(labels.shape[0]),
        "positive_rate": float(labels.mean()),
    }
