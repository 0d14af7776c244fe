"""Membership inference at one fixed low false-positive rate (default 0.1%), with its ε lower bound.

Why: the verifier reports what an attacker achieves where it matters (Carlini et al. 2022: TPR at a low FPR,
not AUC), and turns it into an empirical ε lower bound to hold against the platform's claimed ε.

Threat model: the attacker scores records it knows (the verifier's planted members and held-out non-members
of the same distribution) with any membership score, higher = more likely a member: e.g. the final model's
confidence on the true label (`sampan.audit.true_label_confidence`), or a LiRA score. It learns nothing else.

Two ways to set the threshold:
- with `calibration_nonmember_scores` (recommended for a formal statement): the threshold is the score that
  at most a fraction `fpr` of a separate non-member set reaches; TPR and FPR are then measured on the audited
  sets with that fixed threshold, so the Clopper–Pearson intervals and the ε bound hold at `confidence`;
- without: the threshold is chosen on the audited non-members themselves (the largest TPR whose FPR ≤ the
  target): optimistic for the attacker, the level is nominal (post-selection), and a note says so.

The ε bound is `sampan.audit.empirical_epsilon` (Kairouz et al. 2015 hypothesis-testing bound with one-sided
Clopper–Pearson bounds on both rates). An FPR of 0.1% is resolved only with ≥ 1000 non-members; with fewer a
note says the figure is the TPR at zero false positives.

May import: numpy, sampan.errors, sampan.audit.membership.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.audit.intervals import as_vector, check_confidence, check_number, clopper_pearson, json_float
from sampan.audit.membership import empirical_epsilon
from sampan.errors import DataError

__all__ = ["FixedFprResult", "membership_at_fpr"]


@dataclass(frozen=True)
class FixedFprResult:
    """TPR at a target FPR, both rates with their counts and intervals, and the ε bound (point, lo, hi)."""

    target_fpr: float
    threshold: float  # score ≥ threshold ⇒ "member"
    tp: int
    fp: int
    n_members: int
    n_nonmembers: int
    tpr: float
    fpr: float
    tpr_ci: tuple[float, float]
    fpr_ci: tuple[float, float]
    epsilon: tuple[float, float, float]  # (point, lo, hi); lo is the conservative lower bound
    delta: float
    confidence: float
    threshold_source: str  # "calibration" | "audited (post-selection)"
    claimed_epsilon: float | None = None
    claim_exceeded: bool | None = None  # epsilon lo > claimed ε
    eps_max_provable: float = 0.0  # lo had every member been flagged with no false positive: the audit's power
    notes: list[str] = field(default_factory=list)

    @property
    def eps_lower(self) -> float:
        """The conservative ε lower bound (the interval's low end)."""
        return self.epsilon[1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able figures for a report (inf as the string "inf")."""
        return {
            "target_fpr": self.target_fpr, "threshold": json_float(self.threshold), "tp": self.tp, "fp": self.fp,
            "n_members": self.n_members, "n_nonmembers": self.n_nonmembers, "tpr": self.tpr, "fpr": self.fpr,
            "tpr_ci": list(self.tpr_ci), "fpr_ci": list(self.fpr_ci),
            "epsilon": [json_float(x) for x in self.epsilon], "delta": self.delta, "confidence": self.confidence,
            "threshold_source": self.threshold_source, "claimed_epsilon": self.claimed_epsilon,
            "claim_exceeded": self.claim_exceeded, "eps_max_provable": json_float(self.eps_max_provable),
            "notes": list(self.notes),
        }


def _threshold_on(nonmembers: np.ndarray, fpr: float) -> float:
    """Smallest threshold t with #{s ≥ t} ≤ fpr·n among `nonmembers` (ties kept on the safe side)."""
    allowed = int(np.floor(fpr * nonmembers.size + 1e-9))
    desc = np.sort(nonmembers)[::-1]
    if allowed >= desc.size:
        return float(desc[-1])
    # flag scores strictly above the (allowed+1)-th largest; ≥ on the next representable float above it
    return float(np.nextafter(desc[allowed], np.inf))


def membership_at_fpr(
    member_scores: Any, nonmember_scores: Any, *, fpr: float = 0.001, delta: float = 1e-5,
    confidence: float = 0.95, calibration_nonmember_scores: Any = None, claimed_epsilon: float | None = None,
) -> FixedFprResult:
    """TPR at `fpr` for the rule "score ≥ threshold ⇒ member", and the ε lower bound it implies."""
    members = as_vector(member_scores, "member scores")
    nonmembers = as_vector(nonmember_scores, "non-member scores")
    if not 0.0 < fpr < 1.0:
        raise DataError(f"the target fpr must be in (0, 1), got {fpr}")
    check_confidence(confidence)
    delta = check_number(delta, "delta", low=0.0, high=1.0, low_open=False)
    if delta >= 1.0:
        raise DataError(f"delta must be in [0, 1), got {delta}")
    if claimed_epsilon is not None:  # NaN would silently give claim_exceeded = False (R16-AUDIT-9)
        claimed_epsilon = check_number(claimed_epsilon, "claimed_epsilon", low=0.0, low_open=False)
    notes: list[str] = []
    if calibration_nonmember_scores is not None:
        calib = as_vector(calibration_nonmember_scores, "calibration non-member scores")
        threshold, source = _threshold_on(calib, fpr), "calibration"
        if fpr * calib.size < 1:
            notes.append(f"{calib.size} calibration non-members cannot resolve FPR {fpr:g}: the threshold "
                         "admits no calibration false positive.")
    else:
        threshold, source = _threshold_on(nonmembers, fpr), "audited (post-selection)"
        notes.append("Threshold chosen on the audited non-members: the attacker is granted the best threshold, "
                     f"the {confidence:.0%} level is nominal.")
    if fpr * nonmembers.size < 1:
        notes.append(f"With {nonmembers.size} non-members, FPR {fpr:g} cannot be resolved: this is the TPR at "
                     "zero false positives.")
    tp, fp = int((members >= threshold).sum()), int((nonmembers >= threshold).sum())
    n_pos, n_neg = members.size, nonmembers.size
    eps = empirical_epsilon(tp / n_pos, fp / n_neg, n_pos, n_neg, delta, confidence)
    exceeded = None if claimed_epsilon is None else bool(eps[1] > claimed_epsilon)
    power = empirical_epsilon(1.0, 0.0, n_pos, n_neg, delta, confidence)[1]
    if claimed_epsilon is not None and power <= claimed_epsilon:
        notes.append(f"with {n_pos} members and {n_neg} non-members this test can show at most ε ≥ {power:.3g}: "
                     f"it cannot refute the claimed ε = {claimed_epsilon:g}.")
    return FixedFprResult(
        target_fpr=fpr, threshold=threshold, tp=tp, fp=fp, n_members=n_pos, n_nonmembers=n_neg,
        tpr=tp / n_pos, fpr=fp / n_neg, tpr_ci=clopper_pearson(tp, n_pos, confidence),
        fpr_ci=clopper_pearson(fp, n_neg, confidence), epsilon=eps, delta=delta, confidence=confidence,
        threshold_source=source, claimed_epsilon=claimed_epsilon, claim_exceeded=exceeded, eps_max_provable=power,
        notes=notes,
    )
