"""Is a platform's holdout AUC within a margin of the pooled baseline's? A paired DeLong bound on the difference.

Why not the point estimate: the verifier's holdout is small (250 rows on German credit), and an AUC measured on it
moves by about 0.03 from one holdout to another, more than the 0.02 margin. Compared as two numbers, an honest
platform failed about one draw in ten. Both models are scored on the *same* holdout rows, so the noise of their
difference is much smaller than either AUC's own. DeLong et al. (1988) give its variance from the placement values
(for each positive, the share of negatives it outranks; for each negative, the share of positives that outrank it).
This module uses the midrank form of Sun & Xu (2014), in which ties count 1/2.

The rule is a one-sided non-inferiority test with a cap. H0: the platform's AUC on the population the holdout is
drawn from is at least the pooled AUC minus the margin. The verdict is "fail" when the data reject H0 at level
alpha, that is when the difference plus z(1 - alpha) times its standard error is still below -margin; where the
platform really is within the margin, that happens with probability at most alpha. The cap: a measured deficit
above ``max_deficit`` fails whatever the standard error. Without it a model far from the pooled one would be
credited for being far: the paired error grows as the two models decorrelate (a model with random coefficients,
0.10 AUC below the pooled one, had an error of 0.05 and passed). A model close to the pooled one, as an honest
platform's is, has an error near 0.01 on German credit, and the cap does not bind for it.

`detectable_gap` says what the draw can detect: a platform whose AUC is that far below the pooled AUC fails with
probability `power`. The models count as fixed here (the variance is over holdout rows only), and the verdict says
nothing about the platform's other trainings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import norm, rankdata

from sampan.errors import SampanError

__all__ = ["AucComparison", "AucCompareError", "delong_paired", "noninferior"]


class AucCompareError(SampanError):
    """The scores cannot be compared: lengths differ, a class is missing, or a score is not finite."""


@dataclass(frozen=True)
class AucComparison:
    """One non-inferiority verdict with every number it came from (for the report's figures)."""

    auc: float
    reference_auc: float
    difference: float  # auc - reference_auc
    se: float  # DeLong standard error of the paired difference
    margin: float
    max_deficit: float
    z: float  # z(1 - alpha)
    floor: float  # reference_auc - min(margin + z * se, max_deficit): the lowest AUC that passes
    detectable_gap: float  # min(margin + (z(1 - alpha) + z(power)) * se, max_deficit + z(power) * se)
    positives: int
    negatives: int
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and the placement values of each positive (v10) and each negative (v01), ties counting 1/2."""
    m, n = pos.size, neg.size
    both = rankdata(np.concatenate([pos, neg]))  # midranks
    v10 = (both[:m] - rankdata(pos)) / n  # negatives below each positive (ties 1/2)
    v01 = 1.0 - (both[m:] - rankdata(neg)) / m  # positives above each negative (ties 1/2)
    return float(v10.mean()), v10, v01


def delong_paired(y: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> tuple[float, float, float]:
    """(AUC of a, AUC of b, standard error of AUC_a - AUC_b) when both score the same rows ``y`` (1 = positive)."""
    labels = np.asarray(y)
    a = np.asarray(scores_a, dtype=np.float64).reshape(-1)
    b = np.asarray(scores_b, dtype=np.float64).reshape(-1)
    if not (labels.size == a.size == b.size):
        raise AucCompareError(f"{labels.size} labels, {a.size} and {b.size} scores: the lengths must agree")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise AucCompareError("a score is NaN or infinite")
    positive = labels == 1
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        raise AucCompareError(f"the holdout has {m} positives and {n} negatives: at least 2 of each are needed")
    auc_a, a10, a01 = _placements(a[positive], a[~positive])
    auc_b, b10, b01 = _placements(b[positive], b[~positive])
    d10, d01 = a10 - b10, a01 - b01
    var = float(np.var(d10, ddof=1) / m + np.var(d01, ddof=1) / n)
    return auc_a, auc_b, float(np.sqrt(max(var, 0.0)))


def noninferior(y: np.ndarray, scores: np.ndarray, reference_scores: np.ndarray, *, margin: float,
                alpha: float, power: float, max_deficit: float) -> AucComparison:
    """Judge ``scores`` against ``reference_scores`` on the same rows (see the module docstring for the rule)."""
    if not (0.0 < alpha < 0.5 and 0.5 < power < 1.0 and 0.0 <= margin <= max_deficit):
        raise AucCompareError(f"need 0 < alpha < 0.5, 0.5 < power < 1, 0 <= margin <= max_deficit (got alpha "
                              f"{alpha}, power {power}, margin {margin}, max_deficit {max_deficit})")
    auc, ref, se = delong_paired(y, scores, reference_scores)
    z, z_power = float(norm.ppf(1.0 - alpha)), float(norm.ppf(power))
    floor = ref - min(margin + z * se, max_deficit)
    labels = np.asarray(y) == 1
    return AucComparison(auc=auc, reference_auc=ref, difference=auc - ref, se=se, margin=margin,
                         max_deficit=max_deficit, z=z, floor=floor,
                         detectable_gap=min(margin + (z + z_power) * se, max_deficit + z_power * se),
                         positives=int(labels.sum()), negatives=int((~labels).sum()), passed=auc >= floor)
