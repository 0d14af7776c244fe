"""Federated evaluation without sending scores: per-bin label counts that parties can add up.

Each party bins its own (label, score) pairs into the same fixed equal-width bins on [0, 1] and sends
only the counts (`to_arrays`, plain arrays for a wire Message). The coordinator adds the histograms
and reads AUC, ROC, PR-AUC, KS and calibration off the pooled counts.

Accuracy: scores inside one bin are treated as tied. The exact AUC can differ from the histogram AUC by
at most half the within-bin tied pair mass, Σ_b pos_b·neg_b / (2·P·N), reported by `auc_error_bound()`;
with 2000 bins this is typically below 1e-3. Calibration sums are exact when the coarse bin count
divides the fine one (the default 2000 bins serve 10, 20, 25, 40, 50 and 100 calibration bins exactly).

Bin i holds the scores with floor(p·n_bins) = i (score 1.0 joins the last bin), computed by
arithmetic so that every party bins identically.

What it reveals: the score distribution of positives and of negatives at the bin resolution — the
same information as a fine ROC curve — and, through `sum_p`, the mean score in each bin. To whoever
chooses the model and the bin count, that is each scored row's label and its score to bin resolution
(a model that is one feature's weight makes the score that feature): a party therefore caps the bins
(`MAX_BINS`, and `DP_BINS` under DP, where it also sends `centred()` sums). Add DP noise to the counts
upstream if that is too much.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sampan.metrics._ranking import (
    auc_from_groups,
    auc_tie_bound,
    average_precision_from_groups,
    ks_from_groups,
    roc_from_groups,
)
from sampan.metrics._validation import check_binary, require_both_classes
from sampan.metrics.classification import (
    CalibrationCurve,
    calibration_from_sums,
    ece_from_curve,
    uniform_bin_index,
)

__all__ = ["DEFAULT_BINS", "DP_BINS", "MAX_BINS", "ScoreHistogram"]

DEFAULT_BINS = 2000
MAX_BINS = DEFAULT_BINS  # the most bins a party builds for anyone (bins=1e9 would allocate tens of GB)
DP_BINS = 100  # the most (and the default) under DP: each holdout row's score is then known to 1/100 at best
_ARRAY_KEYS = ("edges", "pos", "neg", "sum_p")


@dataclass(frozen=True, eq=False)
class ScoreHistogram:
    """Positive/negative counts and the sum of predicted probabilities per fixed score bin."""

    edges: NDArray[np.float64]
    pos: NDArray[np.int64]
    neg: NDArray[np.int64]
    sum_p: NDArray[np.float64]

    def __post_init__(self) -> None:
        edges = np.array(self.edges, dtype=np.float64)  # copy: we freeze it below
        n_bins = edges.shape[0] - 1
        if edges.ndim != 1 or n_bins < 1:
            raise ValueError("edges must be a 1-D array with at least two values")
        if edges[0] != 0.0 or edges[-1] != 1.0 or not np.all(np.diff(edges) > 0):
            raise ValueError("edges must increase strictly from 0 to 1")
        pos = _counts(self.pos, n_bins, "pos")
        neg = _counts(self.neg, n_bins, "neg")
        sum_p = np.array(self.sum_p, dtype=np.float64)
        if sum_p.shape != (n_bins,) or not np.all(np.isfinite(sum_p)) or np.any(sum_p < 0):
            raise ValueError(f"sum_p must hold {n_bins} finite non-negative sums")
        for name, value in (("edges", edges), ("pos", pos), ("neg", neg), ("sum_p", sum_p)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @classmethod
    def empty(cls, n_bins: int = DEFAULT_BINS) -> ScoreHistogram:
        """A histogram with no examples: the identity for `merge`."""
        if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
        zeros = np.zeros(n_bins, dtype=np.int64)
        return cls(np.linspace(0.0, 1.0, n_bins + 1), zeros, zeros, np.zeros(n_bins))

    @classmethod
    def from_scores(cls, y: ArrayLike, p: ArrayLike, n_bins: int = DEFAULT_BINS) -> ScoreHistogram:
        """Bin one party's labels and predicted probabilities (probabilities must be in [0, 1])."""
        labels, probs = check_binary(y, p)
        edges = cls.empty(n_bins).edges
        idx = uniform_bin_index(probs, n_bins)
        pos = np.bincount(idx, weights=labels, minlength=n_bins).astype(np.int64)
        total = np.bincount(idx, minlength=n_bins).astype(np.int64)
        sum_p = np.bincount(idx, weights=probs, minlength=n_bins).astype(np.float64, copy=False)
        return cls(edges, pos, total - pos, sum_p)

    def centred(self) -> ScoreHistogram:
        """The same counts with each bin's score sum at its midpoint (count × midpoint): a function of the
        counts alone, so it reveals no score beyond its bin."""
        mid = (self.edges[:-1] + self.edges[1:]) / 2
        return ScoreHistogram(self.edges, self.pos, self.neg, (self.pos + self.neg) * mid)

    @property
    def n_bins(self) -> int:
        return int(self.edges.shape[0] - 1)

    @property
    def n(self) -> int:
        """Number of examples counted."""
        return int(self.pos.sum() + self.neg.sum())

    @property
    def positive_rate(self) -> float:
        if self.n == 0:
            raise ValueError("positive rate is undefined for an empty histogram")
        return float(self.pos.sum() / self.n)

    def merge(self, other: ScoreHistogram) -> ScoreHistogram:
        """Pool two histograms; they must use identical bins, or the counts would not line up."""
        if not isinstance(other, ScoreHistogram):
            raise TypeError(f"can only merge with a ScoreHistogram, not {type(other).__name__}")
        if self.edges.shape != other.edges.shape or not np.array_equal(self.edges, other.edges):
            raise ValueError(
                f"cannot merge histograms with different bins ({self.n_bins} vs {other.n_bins} bins "
                "or different edges)"
            )
        return ScoreHistogram(
            self.edges, self.pos + other.pos, self.neg + other.neg, self.sum_p + other.sum_p
        )

    def __add__(self, other: ScoreHistogram) -> ScoreHistogram:
        if not isinstance(other, ScoreHistogram):
            return NotImplemented
        return self.merge(other)

    def __radd__(self, other: object) -> ScoreHistogram:
        # Lets sum(histograms) work: sum() starts from the integer 0.
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScoreHistogram):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, key), getattr(other, key)) for key in _ARRAY_KEYS
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking arrays: not hashable

    def to_arrays(self) -> dict[str, NDArray]:
        """Plain arrays for a wire Message (keys: edges, pos, neg, sum_p)."""
        return {key: np.array(getattr(self, key)) for key in _ARRAY_KEYS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, ArrayLike]) -> ScoreHistogram:
        """Rebuild from `to_arrays` output, validating everything: the arrays came from another party."""
        missing = [key for key in _ARRAY_KEYS if key not in arrays]
        if missing:
            raise ValueError(f"histogram arrays are missing {missing}")
        return cls(*(np.asarray(arrays[key]) for key in _ARRAY_KEYS))

    def _require_both_classes(self, metric: str) -> None:
        require_both_classes(int(self.pos.sum()), int(self.neg.sum()), metric)

    def auc(self) -> float:
        """ROC AUC with ties inside a bin counted as one half; see `auc_error_bound`."""
        self._require_both_classes("ROC AUC")
        return auc_from_groups(self.pos, self.neg)

    def auc_error_bound(self) -> float:
        """Upper bound on |histogram AUC − exact AUC| from the pairs tied inside a bin."""
        self._require_both_classes("ROC AUC")
        return auc_tie_bound(self.pos, self.neg)

    def roc_curve(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """(fpr, tpr, thresholds): one point per non-empty bin, threshold = the bin's lower edge."""
        self._require_both_classes("ROC curve")
        return roc_from_groups(self.edges[:-1], self.pos, self.neg)

    def pr_auc(self) -> float:
        """Average precision with each bin as one threshold."""
        if int(self.pos.sum()) == 0:
            raise ValueError("PR AUC is undefined when the histogram has no positive (1) labels")
        return average_precision_from_groups(self.pos, self.neg)

    def ks(self) -> float:
        """KS statistic evaluated at the bin edges (a lower bound on the exact KS)."""
        self._require_both_classes("KS statistic")
        return ks_from_groups(self.pos, self.neg)

    def calibration(self, n_bins: int = 10) -> CalibrationCurve:
        """Calibration curve on `n_bins` equal-width bins; fine bins are assigned by their midpoint."""
        if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
        if self.n == 0:
            raise ValueError("calibration is undefined for an empty histogram")
        midpoints = (self.edges[:-1] + self.edges[1:]) / 2.0
        coarse = uniform_bin_index(midpoints, n_bins)
        counts = np.bincount(coarse, weights=self.pos + self.neg, minlength=n_bins).astype(np.float64, copy=False)
        sum_p = np.bincount(coarse, weights=self.sum_p, minlength=n_bins).astype(np.float64, copy=False)
        sum_y = np.bincount(coarse, weights=self.pos, minlength=n_bins).astype(np.float64, copy=False)
        return calibration_from_sums(np.rint(counts).astype(np.int64), sum_p, sum_y)

    def expected_calibration_error(self, n_bins: int = 10) -> float:
        """ECE from the pooled counts; exact when `n_bins` divides the histogram's bin count."""
        return ece_from_curve(self.calibration(n_bins))


def _counts(values: ArrayLike, n_bins: int, name: str) -> NDArray[np.int64]:
    array = np.asarray(values)
    if array.shape != (n_bins,):
        raise ValueError(f"{name} must have shape ({n_bins},), got {array.shape}")
    if array.dtype.kind not in "iu":
        if array.dtype.kind != "f" or not np.all(np.isfinite(array)) or not np.all(array == np.rint(array)):
            raise ValueError(f"{name} must hold integer counts, got dtype {array.dtype}")
    if np.any(array < 0):
        raise ValueError(f"{name} must hold non-negative counts")
    return array.astype(np.int64)

