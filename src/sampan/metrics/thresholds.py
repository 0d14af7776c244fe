"""Decision thresholds chosen on pooled validation score histograms by a stated rule.

Why from histograms: the federated evaluation already releases the pooled per-bin label counts
(`sampan.metrics.histogram`), so a threshold read off them costs no new release. A candidate threshold is a
bin's lower edge t; a row is declined when its PD score is >= t and approved otherwise. The three rules:

- ``max_ks``: the edge that maximises TPR − FPR (the KS point);
- ``approval_rate``: the edge whose approval rate is closest to the target (ties: the lower approval rate,
  the prudent side);
- ``cost_ratio``: the edge that minimises ``cost_fn_fp``·FN + FP, a bad approved costing ``cost_fn_fp``
  times a good declined (ties: the lower threshold).

The threshold is exact to the histogram's bin width (1/2000 by default, 1/100 under DP).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from sampan.metrics.histogram import ScoreHistogram

__all__ = ["RULES", "Confusion", "ThresholdChoice", "ThresholdRule", "choose_threshold", "confusion_at"]

ThresholdRule = Literal["max_ks", "approval_rate", "cost_ratio"]
RULES: tuple[str, ...] = ("max_ks", "approval_rate", "cost_ratio")


@dataclass(frozen=True)
class Confusion:
    """Counts at a threshold; positive = bad (label 1), predicted positive = declined."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def precision(self) -> float | None:
        declined = self.tp + self.fp
        return self.tp / declined if declined else None

    @property
    def recall(self) -> float | None:
        bads = self.tp + self.fn
        return self.tp / bads if bads else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else None

    @property
    def approval_rate(self) -> float | None:
        return (self.tn + self.fn) / self.n if self.n else None


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold, the rule and parameter that chose it, and the confusion matrix at it."""

    rule: str
    parameter: float | None
    threshold: float
    confusion: Confusion

    def to_dict(self) -> dict[str, Any]:
        """JSON for run info and model metadata (the scorer reads ``threshold``)."""
        c = self.confusion
        return {"rule": self.rule, "parameter": self.parameter, "threshold": self.threshold,
                "confusion": asdict(c), "precision": c.precision, "recall": c.recall, "f1": c.f1,
                "approval_rate": c.approval_rate}


def _cumulative(histogram: ScoreHistogram) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Declined positives and negatives for each candidate edge k = 0..n_bins (declined: bins >= k)."""
    tp = np.concatenate([np.cumsum(histogram.pos[::-1])[::-1], [0]])
    fp = np.concatenate([np.cumsum(histogram.neg[::-1])[::-1], [0]])
    return tp.astype(np.int64), fp.astype(np.int64)


def confusion_at(histogram: ScoreHistogram, threshold: float) -> Confusion:
    """The confusion matrix when rows with score >= ``threshold`` are declined (bin resolution)."""
    k = int(np.searchsorted(histogram.edges, float(threshold), side="left"))
    tp, fp = _cumulative(histogram)
    k = min(k, histogram.n_bins)
    positives, negatives = int(histogram.pos.sum()), int(histogram.neg.sum())
    return Confusion(int(tp[k]), int(fp[k]), negatives - int(fp[k]), positives - int(tp[k]))


def choose_threshold(histogram: ScoreHistogram, rule: str = "max_ks", *, approval_rate: float = 0.7,
                     cost_fn_fp: float = 5.0) -> ThresholdChoice:
    """The threshold the stated rule picks on pooled validation counts (see the module docstring)."""
    if rule not in RULES:
        raise ValueError(f"threshold_rule must be one of {list(RULES)}, got {rule!r}")
    positives, negatives = int(histogram.pos.sum()), int(histogram.neg.sum())
    n = positives + negatives
    if n == 0:
        raise ValueError("cannot choose a threshold on an empty histogram")
    tp, fp = _cumulative(histogram)
    parameter: float | None = None
    if rule == "max_ks":
        if positives == 0 or negatives == 0:
            raise ValueError("threshold_rule 'max_ks' needs both labels in the validation rows")
        k = int(np.argmax(tp / positives - fp / negatives))
    elif rule == "approval_rate":
        if not 0.0 <= approval_rate <= 1.0:
            raise ValueError(f"approval_rate must be in [0, 1], got {approval_rate!r}")
        parameter = float(approval_rate)
        approved = 1.0 - (tp + fp) / n  # non-decreasing in k
        gap = np.abs(approved - approval_rate)
        k = int(np.flatnonzero(gap <= gap.min() + 1e-12)[0])  # ties: the lowest k, the lower approval rate
    else:
        if not np.isfinite(cost_fn_fp) or cost_fn_fp <= 0:
            raise ValueError(f"cost_fn_fp must be a positive number, got {cost_fn_fp!r}")
        parameter = float(cost_fn_fp)
        cost = cost_fn_fp * (positives - tp) + fp
        k = int(np.argmin(cost))
    confusion = Confusion(int(tp[k]), int(fp[k]), negatives - int(fp[k]), positives - int(tp[k]))
    return ThresholdChoice(rule, parameter, float(histogram.edges[k]), confusion)
