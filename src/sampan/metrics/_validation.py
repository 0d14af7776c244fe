"""Input checks shared by every metric, so bad inputs fail loudly at the boundary.

Metrics are computed on data a party did not necessarily produce itself (scores from a joint model,
labels from a CSV), so silent coercion would hide real bugs: we reject rather than guess.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _as_1d(values: ArrayLike, name: str) -> NDArray:
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def check_labels(y: ArrayLike) -> NDArray[np.int64]:
    """Return labels as int64 0/1, rejecting anything that is not a binary label."""
    labels = _as_1d(y, "y")
    if labels.size == 0:
        raise ValueError("y is empty; metrics need at least one example")
    if labels.dtype == bool:
        return labels.astype(np.int64)
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise ValueError(f"y must contain 0/1 labels, got dtype {labels.dtype}")
    is_zero = labels == 0
    is_one = labels == 1
    if not np.all(is_zero | is_one):
        bad = np.unique(labels[~(is_zero | is_one)])[:5]
        raise ValueError(f"y must be binary (0/1 or bool); found other values such as {bad.tolist()}")
    return is_one.astype(np.int64)


def check_scores(p: ArrayLike, *, probabilities: bool) -> NDArray[np.float64]:
    """Return scores as float64; with `probabilities`, also require them to lie in [0, 1]."""
    scores = _as_1d(p, "p")
    if scores.dtype != bool and not (
        np.issubdtype(scores.dtype, np.integer) or np.issubdtype(scores.dtype, np.floating)
    ):
        raise ValueError(f"p must be real numbers, got dtype {scores.dtype}")
    scores = scores.astype(np.float64, copy=False)
    if not np.all(np.isfinite(scores)):
        raise ValueError("p contains NaN or infinite values")
    if probabilities and scores.size and (scores.min() < 0.0 or scores.max() > 1.0):
        raise ValueError(
            f"p must be probabilities in [0, 1]; found values in [{scores.min():g}, {scores.max():g}]"
        )
    return scores


def check_binary(
    y: ArrayLike, p: ArrayLike, *, probabilities: bool = True
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Validate a (labels, scores) pair of equal length."""
    labels = check_labels(y)
    scores = check_scores(p, probabilities=probabilities)
    if labels.shape[0] != scores.shape[0]:
        raise ValueError(f"y and p have different lengths: {labels.shape[0]} != {scores.shape[0]}")
    return labels, scores


def require_both_classes(n_pos: int, n_neg: int, metric: str) -> None:
    """Ranking metrics compare positives with negatives; with one class there is nothing to compare."""
    if n_pos == 0 or n_neg == 0:
        present = "positive (1)" if n_pos else "negative (0)"
        raise ValueError(
            f"{metric} is undefined when only one class is present in y (only {present} labels found)"
        )
