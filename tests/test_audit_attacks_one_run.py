"""One-run DP audit (Steinke, Nasr & Jagielski 2023): positive on a non-private mechanism, never above the true ε
of a DP mechanism (over trials), and the bound's arithmetic checked against the binomial tail it is built from."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from sampan.audit import audit_from_scores, audit_over_k, epsilon_lower_bound, one_run_p_value, plan_canaries
from sampan.errors import DataError


def _randomized_response(included: np.ndarray, eps: float, rng: np.random.Generator) -> np.ndarray:
    """ε-DP release of each inclusion bit (the mechanism for which the bound is tight)."""
    keep = rng.random(included.size) < math.exp(eps) / (1 + math.exp(eps))
    return np.where(keep, included, ~included).astype(float)


def test_plan_canaries_is_a_fair_coin_per_canary() -> None:
    mask = plan_canaries(10_000)
    assert mask.dtype == np.bool_ and mask.shape == (10_000,)
    assert stats.binomtest(int(mask.sum()), 10_000, 0.5).pvalue > 1e-4
    seeded = plan_canaries(50, np.random.default_rng(7))
    assert np.array_equal(seeded, plan_canaries(50, np.random.default_rng(7)))  # reproducible when asked
    with pytest.raises(DataError):
        plan_canaries(0)


def test_non_private_mechanism_gives_positive_bound_and_refutes_a_claim() -> None:
    rng = np.random.default_rng(11)  # seeded: reproducible test
    included = plan_canaries(1000, rng)
    scores = included + 0.1 * rng.standard_normal(1000)
    res = audit_from_scores(scores, included, 100, 100, delta=1e-5, confidence=0.95, claimed_epsilon=1.0)
    assert res.correct == res.guesses == 200
    assert res.eps_lower > 2.0
    assert res.claim_refuted is True and res.p_value_at_claim is not None and res.p_value_at_claim < 0.05
    assert res.accuracy_ci[0] > 0.95
    json.dumps(res.to_dict())


@pytest.mark.parametrize("eps", [0.5, 2.0])
def test_dp_mechanism_bound_stays_below_true_epsilon_over_trials(eps: float) -> None:
    rng = np.random.default_rng(12)
    trials, above, bounds = 40, 0, []
    for _ in range(trials):
        included = plan_canaries(1000, rng)
        scores = _randomized_response(included, eps, rng)
        res = audit_from_scores(scores, included, 150, 150, delta=0.0, confidence=0.95)
        bounds.append(res.eps_lower)
        above += res.eps_lower > eps
    # The bound holds with probability >= 95% per trial: at most a few of 40 may exceed (binomial 5% tail).
    assert above <= 6, bounds
    assert float(np.mean(bounds)) < eps


def test_laplace_mechanism_audit_is_sound_and_informative() -> None:
    rng = np.random.default_rng(13)
    eps, bounds = 4.0, []
    for _ in range(20):
        included = plan_canaries(2000, rng)
        scores = included + rng.laplace(0.0, 1.0 / eps, 2000)  # ε-DP per canary (sensitivity 1)
        bounds.append(audit_from_scores(scores, included, 100, 100, delta=1e-6).eps_lower)
    assert max(bounds) <= eps
    assert float(np.mean(bounds)) > 0.5  # the audit sees something: ε is large


def test_tie_breaks_reproducible_with_a_seeded_generator() -> None:
    included = plan_canaries(300, np.random.default_rng(17))
    runs = [audit_from_scores(np.zeros(300), included, 40, 40, rng=np.random.default_rng(5)).correct for _ in range(2)]
    assert runs[0] == runs[1]


def test_constant_scores_show_nothing() -> None:
    rng = np.random.default_rng(14)
    hits = 0
    for _ in range(20):
        included = plan_canaries(500, rng)
        hits += audit_from_scores(np.zeros(500), included, 50, 50).eps_lower > 0
    assert hits <= 3


def test_p_value_reduces_to_binomial_tail_without_delta_and_grows_with_delta() -> None:
    m, r, v, eps = 1000, 200, 150, 1.0
    q = math.exp(eps) / (1 + math.exp(eps))
    assert one_run_p_value(m, r, v, eps, 0.0) == pytest.approx(float(stats.binom.sf(v - 1, r, q)))
    assert one_run_p_value(m, r, v, eps, 1e-5) > one_run_p_value(m, r, v, eps, 0.0)
    # The ε bound is where the p-value crosses 1 - confidence.
    e = epsilon_lower_bound(m, r, v, 0.0, 0.95)
    assert one_run_p_value(m, r, v, e, 0.0) < 0.05 <= one_run_p_value(m, r, v, e + 1e-6, 0.0)
    assert epsilon_lower_bound(m, r, v, 1e-3, 0.95) < e  # δ weakens the bound
    assert epsilon_lower_bound(m, r, r // 2, 0.0, 0.95) == 0.0  # chance accuracy: no evidence


def test_audit_states_its_power_and_warns_when_it_cannot_refute_the_claim() -> None:
    rng = np.random.default_rng(16)
    included = plan_canaries(12, rng)
    res = audit_from_scores(included.astype(float), included, 3, 3, delta=1e-5, claimed_epsilon=1.0)
    assert res.correct == 6 and res.eps_lower == pytest.approx(res.eps_max_provable)
    assert res.eps_max_provable < 1.0 and res.claim_refuted is False
    assert any("cannot refute" in n for n in res.notes)


def test_sweep_over_k_is_bonferroni_corrected() -> None:
    rng = np.random.default_rng(15)
    included = plan_canaries(1000, rng)
    scores = included + 0.1 * rng.standard_normal(1000)
    ks = [(10, 10), (50, 50), (100, 100)]
    res = audit_over_k(scores, included, ks, claimed_epsilon=1.0)
    single = audit_from_scores(scores, included, 100, 100)
    assert 0 < res.eps_lower < single.eps_lower  # the correction costs a little
    assert res.confidence == 0.95 and res.claim_refuted is True
    assert any("Bonferroni" in n for n in res.notes)
    bounds = []
    for _ in range(20):  # and stays sound on a DP mechanism
        inc = plan_canaries(1000, rng)
        bounds.append(audit_over_k(_randomized_response(inc, 1.0, rng), inc, ks).eps_lower)
    assert sum(b > 1.0 for b in bounds) <= 3
    with pytest.raises(DataError):
        audit_over_k(scores, included, [])


@pytest.mark.parametrize("args", [
    (np.zeros(10), np.zeros(10, bool), 0, 0), (np.zeros(10), np.zeros(10, bool), 8, 8),
    (np.zeros(10), np.zeros(9, bool), 1, 1), (np.zeros(10), np.zeros(10), 1, 1),
])
def test_bad_inputs_are_clear_errors(args: tuple[np.ndarray, np.ndarray, int, int]) -> None:
    with pytest.raises(DataError):
        audit_from_scores(*args)
