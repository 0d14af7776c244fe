"""One-run DP audit with planted canaries (Steinke, Nasr & Jagielski 2023, "Privacy auditing with one (1)
training run", NeurIPS 2023).

Why: a platform that claims (ε, δ)-DP can be refuted from a single training run. The verifier plants m
canaries in its own party's data, including each one independently with probability 1/2 (a fair coin it
keeps secret); after training it scores every canary (e.g. the model's confidence on the canary's label, or
the alignment of the party's captured update with the canary). It guesses "included" for the k+ highest
scores and "excluded" for the k- lowest, abstaining on the rest. Under (ε, δ)-DP the number of correct
guesses W among r = k+ + k- guesses is stochastically dominated as in their Theorem 5.2:

    P[W ≥ v] ≤ β + α·2mδ,   β = P[Binomial(r, q) ≥ v],   q = e^ε / (1 + e^ε),
    α = max_{1 ≤ i ≤ v} P[v − i ≤ Binomial(r, q) < v] / i.

The reported ε lower bound is the largest ε whose p-value for the observed v is still below 1 − confidence
(bisection, as in the paper's reference algorithm): with probability ≥ `confidence` over the coins, a
mechanism satisfying (ε, δ)-DP with ε below it would not have produced this many correct guesses.

Threat model: the auditor controls the canaries and the coins (the verifier's own party); the platform does
not know which canaries were included. The bound is valid for any scoring rule fixed before the coins are
looked at; choosing k+ / k- after looking (e.g. a sweep) makes the confidence nominal. A bound of 0
certifies nothing; a bound above the claimed ε refutes the claim (or its accounting). One run gives a
loose bound: for ε ≳ 4, far more canaries are needed to get close (paper, Figure 1). Every result carries
`eps_max_provable` (the bound had every guess been right): a claim at or above it cannot be refuted by this
audit, and a note says so (for `audit_over_k`, the best over its tries at the per-try Bonferroni level).

May import: numpy, scipy, sampan.errors (via intervals).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from sampan.audit.intervals import as_vector, check_confidence, check_count, check_number, clopper_pearson, json_float
from sampan.errors import DataError

__all__ = ["OneRunAuditResult", "audit_from_scores", "audit_over_k", "epsilon_lower_bound", "one_run_p_value",
           "plan_canaries"]

_BISECTION_STEPS = 40
_EPS_CAP = 100.0  # beyond this q rounds to 1 in float64: report the cap


def plan_canaries(m: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """The inclusion coins: a boolean mask of length m, each True independently with probability 1/2.

    Without `rng`, cryptographic randomness (the platform must not predict the coins); pass a seeded
    generator only for a reproducible test, and record the seed in the evaluation manifest."""
    m = check_count(m, "the number of canaries m", low=1)
    gen = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
    return gen.random(m) < 0.5


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[W ≥ v] bound under (ε, δ)-DP with m canaries and r guesses (Steinke et al. 2023, Theorem 5.2)."""
    m, r, v = check_count(m, "canaries m"), check_count(r, "guesses r"), check_count(v, "correct guesses v")
    if not 0 <= v <= r <= m:
        raise DataError(f"need 0 <= correct <= guesses <= canaries, got v={v}, r={r}, m={m}")
    epsilon = check_number(epsilon, "epsilon", low=0.0, low_open=False)
    delta = check_number(delta, "delta", low=0.0, high=1.0, low_open=False)
    q = 1.0 / (1.0 + math.exp(-epsilon))  # accuracy of ε-DP randomized response
    beta = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) ≥ v]
    alpha = 0.0
    if delta > 0.0 and v > 0:
        pmf = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)  # P[B = v-1], P[B = v-2], ..., P[B = 0]
        tail = np.cumsum(pmf)  # i-th entry: P[v - i ≤ B < v]
        alpha = float(np.max(tail / np.arange(1, v + 1)))
    return min(1.0, beta + alpha * delta * 2.0 * m)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, confidence: float = 0.95) -> float:
    """Largest ε (to bisection precision, from below) with one_run_p_value(ε) < 1 − confidence; 0 if none."""
    check_confidence(confidence)
    p = 1.0 - confidence
    if one_run_p_value(m, r, v, 0.0, delta) >= p:
        return 0.0
    lo, hi = 0.0, 1.0
    while one_run_p_value(m, r, v, hi, delta) < p:  # p-value rises with ε
        lo, hi = hi, hi * 2.0
        if hi > _EPS_CAP:
            return _EPS_CAP
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2.0
        if one_run_p_value(m, r, v, mid, delta) < p:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class OneRunAuditResult:
    """Outcome of one audit; `eps_lower` holds with probability ≥ `confidence` (see module doc)."""

    eps_lower: float
    m: int  # canaries planted
    included: int  # canaries whose coin said "include"
    guesses: int  # r = k_pos + k_neg
    correct: int  # v
    k_pos: int
    k_neg: int
    delta: float
    confidence: float
    accuracy: float  # correct / guesses
    accuracy_ci: tuple[float, float]  # Clopper–Pearson on the guess accuracy
    claimed_epsilon: float | None = None
    p_value_at_claim: float | None = None  # small: the claim is refuted at that level
    claim_refuted: bool | None = None
    eps_max_provable: float = 0.0  # the bound had every guess been right: this audit's power
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able figures for a report."""
        return {
            "eps_lower": json_float(self.eps_lower), "m": self.m, "included": self.included,
            "guesses": self.guesses, "correct": self.correct, "k_pos": self.k_pos, "k_neg": self.k_neg,
            "delta": self.delta, "confidence": self.confidence, "accuracy": self.accuracy,
            "accuracy_ci": list(self.accuracy_ci), "claimed_epsilon": self.claimed_epsilon,
            "p_value_at_claim": self.p_value_at_claim, "claim_refuted": self.claim_refuted,
            "eps_max_provable": json_float(self.eps_max_provable), "notes": list(self.notes),
        }


def audit_from_scores(
    scores: Any, included: Any, k_pos: int, k_neg: int, delta: float = 0.0, confidence: float = 0.95,
    *, claimed_epsilon: float | None = None, rng: np.random.Generator | None = None,
) -> OneRunAuditResult:
    """Guess "included" for the k_pos highest scores and "excluded" for the k_neg lowest; bound ε.

    `scores`: one number per canary, higher = more likely included (fixed before looking at the coins).
    `included`: the coins from :func:`plan_canaries`. Ties are broken at random so that a constant score
    (a mechanism that reveals nothing) gives chance-level guesses, not an ordering artefact; pass a seeded
    `rng` to make the tie-breaks reproducible from a manifest."""
    s = as_vector(scores, "canary scores")
    inc = np.asarray(included)
    if inc.shape != s.shape or inc.dtype != np.bool_:
        raise DataError(f"included must be a boolean mask with one entry per canary ({s.size}), "
                        f"got dtype {inc.dtype} and shape {inc.shape}")
    m = s.size
    k_pos, k_neg = check_count(k_pos, "k_pos"), check_count(k_neg, "k_neg")
    if k_pos + k_neg > m or k_pos + k_neg == 0:
        raise DataError(f"need k_pos, k_neg >= 0 with 0 < k_pos + k_neg <= m={m}, got {k_pos} and {k_neg}")
    delta = check_number(delta, "delta", low=0.0, high=1.0, low_open=False)
    if delta >= 1.0:
        raise DataError(f"delta must be in [0, 1), got {delta}")
    check_confidence(confidence)
    if claimed_epsilon is not None:
        claimed_epsilon = check_number(claimed_epsilon, "claimed_epsilon", low=0.0, low_open=False)
    tiebreak = (rng if rng is not None else np.random.default_rng(secrets.randbits(128))).random(m)
    order = np.lexsort((tiebreak, s))  # ascending by score, ties in random order
    correct = int(inc[order[m - k_pos:]].sum()) if k_pos else 0
    correct += int((~inc[order[:k_neg]]).sum()) if k_neg else 0
    r = k_pos + k_neg
    eps = epsilon_lower_bound(m, r, correct, delta, confidence)
    power = epsilon_lower_bound(m, r, r, delta, confidence)
    notes = []
    if claimed_epsilon is not None and power <= claimed_epsilon:
        notes.append(f"with {m} canaries and {r} guesses this audit can show at most ε ≥ {power:.3g}: it cannot "
                     f"refute the claimed ε = {claimed_epsilon:g} whatever the platform does (plant more canaries).")
    if delta > 0 and 2 * m * delta > 0.1:
        notes.append(f"2·m·δ = {2 * m * delta:.2g}: δ is large for this many canaries, the bound is weak.")
    if eps >= _EPS_CAP:
        notes.append(f"eps_lower reached the numeric cap {_EPS_CAP:g}: every guess was right.")
    p_claim = refuted = None
    if claimed_epsilon is not None:
        p_claim = one_run_p_value(m, r, correct, float(claimed_epsilon), delta)
        refuted = p_claim < 1.0 - confidence
    return OneRunAuditResult(
        eps_lower=eps, m=m, included=int(inc.sum()), guesses=r, correct=correct, k_pos=k_pos, k_neg=k_neg,
        delta=delta, confidence=confidence, accuracy=correct / r, accuracy_ci=clopper_pearson(correct, r, confidence),
        claimed_epsilon=claimed_epsilon, p_value_at_claim=p_claim, claim_refuted=refuted, eps_max_provable=power,
        notes=notes,
    )


def audit_over_k(
    scores: Any, included: Any, k_values: list[tuple[int, int]], delta: float = 0.0, confidence: float = 0.95,
    *, claimed_epsilon: float | None = None, rng: np.random.Generator | None = None,
) -> OneRunAuditResult:
    """Try several (k_pos, k_neg) and keep the largest bound, with a Bonferroni correction: each try runs at
    confidence 1 − (1 − confidence)/len(k_values), so the reported bound still holds at `confidence`."""
    if not k_values:
        raise DataError("audit_over_k needs at least one (k_pos, k_neg) pair")
    check_confidence(confidence)
    if claimed_epsilon is not None:
        claimed_epsilon = check_number(claimed_epsilon, "claimed_epsilon", low=0.0, low_open=False)
    each = 1.0 - (1.0 - confidence) / len(k_values)
    results = [audit_from_scores(scores, included, kp, kn, delta, each, rng=rng) for kp, kn in k_values]
    best = max(results, key=lambda r: r.eps_lower)
    power = max(r.eps_max_provable for r in results)  # the best any try could show, at the per-try level
    notes = [*best.notes, f"best of {len(k_values)} (k_pos, k_neg) choices, each at confidence {each:.4g} "
             f"(Bonferroni): the bound holds at {confidence:g}; accuracy_ci and eps_max_provable are at the "
             f"per-try level {each:.4g}."]
    if claimed_epsilon is not None and power <= claimed_epsilon:  # R16-AUDIT-10: the power note of each try
        notes.append(f"with {best.m} canaries and these (k_pos, k_neg) choices this audit can show at most "
                     f"ε ≥ {power:.3g}: it cannot refute the claimed ε = {claimed_epsilon:g} whatever the platform "
                     "does (plant more canaries).")
    p_claim = refuted = None
    if claimed_epsilon is not None:
        p_claim = min(1.0, len(k_values) * one_run_p_value(best.m, best.guesses, best.correct,
                                                           float(claimed_epsilon), delta))
        refuted = p_claim < 1.0 - confidence
    return OneRunAuditResult(**{**best.__dict__, "confidence": confidence, "claimed_epsilon": claimed_epsilon,
                                "p_value_at_claim": p_claim, "claim_refuted": refuted, "eps_max_provable": power,
                                "notes": notes})
