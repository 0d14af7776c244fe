"""Membership-inference audits of a trained binary classifier.

Why: a DP-trained credit model claims (ε, δ). An attack that tells training rows from non-training rows
better than that claim allows is proof of a leak (or of an accounting bug). These audits can refute a
claim; they can never certify one.

Threat model. The attacker sees the final model only through its confidence on the true label,
p(y_i | x_i), for any record (x_i, y_i) of an audit pool, e.g. another bank or a consumer of the
released model. It does not see updates, gradients or secure-aggregation traffic (gradient inversion
is a separate audit). For LiRA the attacker also knows the training procedure and can run it on
subsets of the pool (shadow models); it does not know which pool rows trained the target. This is the
auditor's strong, deliberately pessimistic attacker: a real adversary knows less.

The library is framework-agnostic: the caller supplies ``train_fn(X, y, seed) -> model`` (a pooled fit,
a whole federated run, with or without DP) and ``score_fn(model, X, y) -> p(y_i | x_i)``.

Attacks
- ``loss_threshold``: Yeom et al. 2018. Higher confidence on the true label (lower loss) => member.
- ``lira_online`` / ``lira_offline``: Carlini et al. 2022, "Membership Inference Attacks From First
  Principles". Each shadow model is trained on a random half of the pool, balanced so every row is IN
  for exactly ⌊n_shadow/2⌋ shadows. Per row, the logit-scaled confidence φ = log(p / (1 − p)) is
  modelled as Gaussian over the shadows where the row was IN and where it was OUT. Online scores the
  target's φ by the log-likelihood ratio N(φ; μ_in, σ_in) / N(φ; μ_out, σ_out); offline uses OUT only,
  with the one-sided score −log P[Z ≥ φ], Z ~ N(μ_out, σ_out) (−log of a p-value). Means are per row;
  a row's own standard deviation is used only when it has at least ``min_samples_own_std`` samples,
  otherwise the pooled within-row standard deviation of all rows (Carlini et al. found a global
  variance better below ~64 shadows).

What the numbers mean
- ``auc``: average-case distinguishability, 0.5 = chance. A weak summary: an attack can have AUC 0.52
  and still identify a few rows with certainty.
- ``tpr_at_fpr[f]``: the largest fraction of members flagged by a threshold that flags at most a
  fraction f of non-members (exact thresholding, no interpolation). With N non-members an FPR below
  1/N cannot be resolved, so TPR at such f is the TPR at zero false positives.
- ``epsilon_lower_bound``: an (ε, δ)-DP mechanism forces every test to satisfy
  TPR ≤ e^ε·FPR + δ and 1 − FPR ≤ e^ε·(1 − TPR) + δ (Kairouz et al. 2015; Jagielski et al. 2020;
  Nasr et al. 2021), so an attack at (TPR, FPR) shows
  ε ≥ max(0, log((TPR − δ)/FPR), log((1 − FPR − δ)/(1 − TPR))). The point estimate plugs in the
  observed rates and is +inf when the chosen threshold has no false positives (perfect separation).
- ``epsilon_lower_bound_ci95 = (lo, hi)``: the same formula with Clopper–Pearson bounds on the rates.
  ``lo`` uses the lower bound on TPR and the upper bound on FPR, each one-sided at 1 − (1 − c)/2
  (97.5% for c = 0.95), so by a union bound ε ≥ lo holds with probability ≥ c for a fixed threshold.
  ``hi`` swaps the bounds (upper TPR, lower FPR); it bounds what this attack shows, not the model's ε,
  and is +inf whenever the threshold has no false positives.
- The reported threshold is the one maximising ``lo``; ties (typically all zero: no evidence) go to the
  narrowest interval. Choosing it on the audited scores makes c nominal (post-selection); for a formal
  claim fix the threshold on independent data and call :func:`empirical_epsilon` once.

Reading ε against a claim: the bound treats each pool row as one trial of the mechanism. That is sound
(in the sense of Steinke, Nasr & Jagielski 2023, one-run auditing) when target membership was drawn
by independent fair coin flips over the pool; with a hand-picked split it is a heuristic comparison.
A single run gives a loose bound: a model trained at ε = 8 can show lo ≈ 0.5 without contradiction.

May import: numpy, scipy, sampan.metrics, sampan.errors (DataError, a ValueError). Never transports: the
caller's train_fn owns any federation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from sampan.errors import DataError
from sampan.metrics import roc_auc, roc_curve

# LiRA: `sampan.audit.lira`; the combined report: `sampan.audit.report.audit_membership`.
__all__ = [
    "AttackResult",
    "ScoreFn",
    "TrainFn",
    "empirical_epsilon",
    "loss_threshold_attack",
    "roc_from_scores",
]

TrainFn = Callable[[np.ndarray, np.ndarray, int], Any]
"""(X, y, seed) -> fitted model (opaque to the audit)."""

ScoreFn = Callable[[Any, np.ndarray, np.ndarray], np.ndarray]
"""(model, X, y) -> per-row confidence on the true label, p(y_i | x_i), in [0, 1]."""

DEFAULT_FPRS: tuple[float, ...] = (0.1, 0.01, 0.001)
_PROB_EPS = 1e-15  # keeps φ finite (|φ| ≤ 34.5) for saturated confidences
_MIN_STD = 1e-4  # logit units; a constant φ would otherwise give a zero-width Gaussian
_MAX_SCORE = 1e300  # attack scores stay finite so ranking metrics accept them


@dataclass(frozen=True)
class AttackResult:
    """One attack's outcome; see the module docstring for what each number means."""

    name: str  # "loss_threshold" | "lira_offline" | "lira_online"
    auc: float
    tpr_at_fpr: dict[float, float]
    epsilon_lower_bound: float  # plug-in estimate at the chosen threshold (may be +inf)
    epsilon_lower_bound_ci95: tuple[float, float]  # (lo, hi), Clopper–Pearson; hi may be +inf
    n_members: int
    n_nonmembers: int
    delta: float = 1e-5
    operating_point: tuple[float, float] = (0.0, 0.0)  # (TPR, FPR) at the chosen threshold

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: FPR keys as strings ("0.01"), +inf as the string "inf" (strict JSON has no inf)."""
        return {
            "name": self.name,
            "auc": self.auc,
            "tpr_at_fpr": {f"{k:g}": v for k, v in sorted(self.tpr_at_fpr.items(), reverse=True)},
            "epsilon_lower_bound": _json_float(self.epsilon_lower_bound),
            "epsilon_lower_bound_ci95": [_json_float(x) for x in self.epsilon_lower_bound_ci95],
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
            "delta": self.delta,
            "operating_point": {"tpr": self.operating_point[0], "fpr": self.operating_point[1]},
        }


def _json_float(x: float) -> float | str:
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


# --------------------------------------------------------------------------------------------- ε bounds


def _check_delta_confidence(delta: float, confidence: float) -> None:
    if not 0.0 <= delta < 1.0:
        raise DataError(f"delta must be in [0, 1), got {delta}")
    if not 0.0 < confidence < 1.0:
        raise DataError(f"confidence must be in (0, 1), got {confidence}")


def _cp_bounds(k: np.ndarray, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Clopper–Pearson bounds at level 1 − alpha each: (lower, upper) on a binomial rate."""
    k = np.asarray(k, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        lower = np.where(k > 0, stats.beta.ppf(alpha, k, n - k + 1), 0.0)
        upper = np.where(k < n, stats.beta.ppf(1.0 - alpha, k + 1, n - k), 1.0)
    return lower, upper


def _epsilon_formula(tpr: np.ndarray, fpr: np.ndarray, delta: float) -> np.ndarray:
    """max(0, log((TPR − δ)/FPR), log((1 − FPR − δ)/(1 − TPR))), with x/0 = +inf for x > 0."""

    def log_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(den > 0, np.log(np.maximum(num, 1e-300) / np.where(den > 0, den, 1.0)), np.inf)
        return np.where(num > 0, out, 0.0)

    return np.maximum(0.0, np.maximum(log_ratio(tpr - delta, fpr), log_ratio(1.0 - fpr - delta, 1.0 - tpr)))


def _epsilon_from_counts(
    tp: np.ndarray, fp: np.ndarray, n_pos: int, n_neg: int, delta: float, confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised (point, lo, hi) for arrays of true/false-positive counts at each threshold."""
    alpha = (1.0 - confidence) / 2.0  # split between the two rates (union bound)
    tpr_lo, tpr_hi = _cp_bounds(tp, n_pos, alpha)
    fpr_lo, fpr_hi = _cp_bounds(fp, n_neg, alpha)
    point = _epsilon_formula(tp / n_pos, fp / n_neg, delta)
    lo = _epsilon_formula(tpr_lo, fpr_hi, delta)
    hi = _epsilon_formula(tpr_hi, fpr_lo, delta)
    return point, lo, hi


def empirical_epsilon(
    tpr: float, fpr: float, n_pos: int, n_neg: int, delta: float, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(point, lo, hi) ε lower bound for one attack threshold with rates measured on n_pos members and
    n_neg non-members. lo ≤ point ≤ hi; all three are 0 when TPR ≤ FPR. lo holds with probability
    ≥ `confidence` (one-sided Clopper–Pearson at 1 − (1 − confidence)/2 on each rate); see module doc."""
    _check_delta_confidence(delta, confidence)
    if n_pos < 1 or n_neg < 1:
        raise DataError(f"need at least one member and one non-member, got {n_pos} and {n_neg}")
    if not (0.0 <= tpr <= 1.0 and 0.0 <= fpr <= 1.0):
        raise DataError(f"tpr and fpr must be rates in [0, 1], got {tpr} and {fpr}")
    tp, fp = np.array([round(tpr * n_pos)]), np.array([round(fpr * n_neg)])
    if abs(tp[0] - tpr * n_pos) > 1e-6 * n_pos or abs(fp[0] - fpr * n_neg) > 1e-6 * n_neg:
        raise DataError("tpr·n_pos and fpr·n_neg must be whole counts (rates measured on those sets)")
    point, lo, hi = _epsilon_from_counts(tp, fp, n_pos, n_neg, delta, confidence)
    return float(point[0]), float(lo[0]), float(hi[0])


# ------------------------------------------------------------------------------------------ ROC & results


def roc_from_scores(
    member_scores: np.ndarray, nonmember_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) for the rule 'score ≥ threshold ⇒ member' (sampan.metrics.roc_curve)."""
    members, nonmembers = _as_scores(member_scores, "member scores"), _as_scores(nonmember_scores, "non-member scores")
    labels = np.concatenate([np.ones(len(members), np.int64), np.zeros(len(nonmembers), np.int64)])
    return roc_curve(labels, np.concatenate([members, nonmembers]))


def _as_scores(values: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise DataError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{name} contain NaN or infinite values")
    return arr


def _result_from_scores(
    name: str, member_scores: np.ndarray, nonmember_scores: np.ndarray, delta: float,
    fprs: tuple[float, ...] = DEFAULT_FPRS, confidence: float = 0.95,
) -> AttackResult:
    _check_delta_confidence(delta, confidence)
    members, nonmembers = _as_scores(member_scores, "member scores"), _as_scores(nonmember_scores, "non-member scores")
    n_pos, n_neg = len(members), len(nonmembers)
    fpr, tpr, _ = roc_from_scores(members, nonmembers)
    labels = np.concatenate([np.ones(n_pos, np.int64), np.zeros(n_neg, np.int64)])
    auc = roc_auc(labels, np.concatenate([members, nonmembers]))
    # Exact thresholding: the best TPR among thresholds whose FPR does not exceed the target.
    tpr_at = {float(f): float(tpr[fpr <= f + 1e-12].max()) for f in fprs}
    tp, fp = np.rint(tpr * n_pos), np.rint(fpr * n_neg)
    point, lo, hi = _epsilon_from_counts(tp, fp, n_pos, n_neg, delta, confidence)
    best = lo.max()
    candidates = np.flatnonzero(lo >= best - 1e-12)
    i = int(candidates[np.argmin(hi[candidates])])  # ties: the narrowest interval
    return AttackResult(
        name=name, auc=float(auc), tpr_at_fpr=tpr_at, epsilon_lower_bound=float(point[i]),
        epsilon_lower_bound_ci95=(float(lo[i]), float(hi[i])), n_members=n_pos, n_nonmembers=n_neg,
        delta=delta, operating_point=(float(tpr[i]), float(fpr[i])),
    )


def loss_threshold_attack(
    target_scores_members: np.ndarray, target_scores_nonmembers: np.ndarray, *, delta: float = 1e-5
) -> AttackResult:
    """Yeom et al. 2018: flag as member when the confidence on the true label is high (loss low).

    Every threshold is tried, i.e. the attacker is granted the best one: an upper bound on this
    attack, which is what an audit wants."""
    return _result_from_scores("loss_threshold", target_scores_members, target_scores_nonmembers, delta)
