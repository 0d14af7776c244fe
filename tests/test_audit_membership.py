"""Membership-inference audits: attack quality on known-leaky and known-safe models, ε bounds, determinism."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from sampan.audit import (
    AttackResult,
    ShadowScores,
    audit_membership,
    empirical_epsilon,
    lira_attack,
    lira_from_shadows,
    loss_threshold_attack,
    roc_from_scores,
    train_shadow_models,
    true_label_confidence,
)
from sampan.horizontal import TrainConfig, train
from sampan.models import LogisticRegression

# ------------------------------------------------------------------------------------------ helpers


def _memoriser_train(X: np.ndarray, y: np.ndarray, seed: int) -> frozenset[bytes]:
    """A 'model' that is just its training set: the worst possible leak."""
    return frozenset(row.tobytes() for row in X)


def _memoriser_score(model: frozenset[bytes], X: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.array([0.99 if row.tobytes() in model else 0.5 for row in X])


def _blind_train(X: np.ndarray, y: np.ndarray, seed: int) -> int:
    return seed


def _blind_score(model: int, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Confidence that ignores the training set entirely."""
    return np.random.default_rng(model).uniform(0.01, 0.99, size=len(X))


def _logistic_train_fn(config: TrainConfig):
    def train_fn(X: np.ndarray, y: np.ndarray, seed: int) -> tuple[LogisticRegression, np.ndarray]:
        model = LogisticRegression(X.shape[1])
        result = train(model, model.init_params(np.random.default_rng(0)), X, y, config, np.random.default_rng(seed))
        return model, result.params
    return train_fn


def _logistic_score(fitted: tuple[LogisticRegression, np.ndarray], X: np.ndarray, y: np.ndarray) -> np.ndarray:
    model, params = fitted
    return true_label_confidence(model.predict_proba(params, X), y)


def _dataset(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w = rng.normal(size=d) / np.sqrt(d)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-X @ w))).astype(np.float64)
    return X, y


def _audit(n: int, d: int, config: TrainConfig, seed: int = 0, n_shadow: int = 16) -> dict[str, dict[str, Any]]:
    X, y = _dataset(n, d, seed)
    mask = np.random.default_rng(seed + 100).random(n) < 0.5  # fair coin per row, as the bound assumes
    train_fn = _logistic_train_fn(config)
    target = train_fn(X[mask], y[mask], 12345)
    report = audit_membership(train_fn, _logistic_score, X, y, target_model=target, target_member_mask=mask,
                              n_shadow=n_shadow, seed=seed)
    json.dumps(report, allow_nan=False)  # strict JSON, no NaN/Infinity tokens
    return {a["name"]: a for a in report["attacks"]}


OVERFIT = TrainConfig(epochs=50, batch_size=32, learning_rate=0.5, l2=0.0)
REGULARISED = TrainConfig(epochs=5, batch_size=64, learning_rate=0.1, l2=1e-2)


@pytest.fixture(scope="module")
def overfit_attacks() -> dict[str, dict[str, Any]]:
    # ~500 training rows x 250 features per model: logistic regression memorises label noise.
    return _audit(1000, 250, OVERFIT)


@pytest.fixture(scope="module")
def regularised_attacks() -> dict[str, dict[str, Any]]:
    return _audit(1000, 5, REGULARISED)


# ----------------------------------------------------------------------------------- synthetic sanity


def test_memorising_model_is_caught_by_every_attack() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(1000, 3)), rng.integers(0, 2, 1000).astype(float)
    mask = rng.random(1000) < 0.5
    target = _memoriser_train(X[mask], y[mask], 0)
    conf = _memoriser_score(target, X, y)
    loss = loss_threshold_attack(conf[mask], conf[~mask])
    online = lira_attack(_memoriser_train, _memoriser_score, X, y, target_model=target, target_member_mask=mask,
                         n_shadow=4, seed=1)
    offline = lira_attack(_memoriser_train, _memoriser_score, X, y, target_model=target, target_member_mask=mask,
                          n_shadow=4, seed=1, online=False)
    for result in (loss, online, offline):
        assert result.auc == 1.0
        assert result.tpr_at_fpr[0.001] == 1.0 and result.tpr_at_fpr[0.01] == 1.0
        lo, hi = result.epsilon_lower_bound_ci95
        # ~500 members / non-members, perfect separation: CP bounds give ε ≥ log(0.993/0.0073) ≈ 4.9.
        assert lo > 4.5
        assert lo <= result.epsilon_lower_bound <= hi
        assert result.epsilon_lower_bound == math.inf and result.operating_point == (1.0, 0.0)
    assert loss.to_dict()["epsilon_lower_bound"] == "inf"


def test_membership_independent_scores_show_no_leak() -> None:
    rng = np.random.default_rng(1)
    result = loss_threshold_attack(rng.random(1000), rng.random(1000))
    assert abs(result.auc - 0.5) < 0.05
    assert result.epsilon_lower_bound_ci95[0] <= 0.5
    assert result.tpr_at_fpr[0.01] < 0.05

    X, y = rng.normal(size=(2000, 2)), rng.integers(0, 2, 2000).astype(float)
    mask = rng.random(2000) < 0.5
    for online in (True, False):
        lira = lira_attack(_blind_train, _blind_score, X, y, target_model=999, target_member_mask=mask,
                           n_shadow=8, seed=2, online=online)
        assert abs(lira.auc - 0.5) < 0.05
        assert lira.epsilon_lower_bound_ci95[0] <= 0.5


def test_tpr_at_fpr_is_exact_thresholding() -> None:
    members = np.array([10.0, 9.0, 8.0, 3.0, 2.0])
    nonmembers = np.array([9.5, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -1.0, -2.0])
    result = loss_threshold_attack(members, nonmembers)
    assert result.tpr_at_fpr[0.01] == 0.2  # only 10.0 is above every non-member
    assert result.tpr_at_fpr[0.1] == 1.0  # threshold 2.0 lets exactly one non-member (9.5) through
    # 100 non-members: FPR ≤ 1% allows exactly one false positive (4.5), not two (3.5)
    result = loss_threshold_attack(np.array([5.0, 4.0, 3.0]), np.concatenate([[4.5, 3.5], np.zeros(98)]))
    assert result.tpr_at_fpr[0.01] == pytest.approx(2 / 3) and result.tpr_at_fpr[0.001] == pytest.approx(1 / 3)
    fpr, tpr, thresholds = roc_from_scores(members, nonmembers)
    assert (fpr[0], tpr[0], thresholds[0]) == (0.0, 0.0, math.inf) and fpr[-1] == tpr[-1] == 1.0


# ------------------------------------------------------------------------------- real small learner


def test_lira_detects_an_overfit_logistic_regression(overfit_attacks: dict[str, dict[str, Any]]) -> None:
    online, offline, loss = (overfit_attacks[k] for k in ("lira_online", "lira_offline", "loss_threshold"))
    assert online["auc"] > 0.62 and offline["auc"] > 0.58
    # LiRA calibrates per row, so it is at least as good as the global loss threshold where it matters.
    assert online["tpr_at_fpr"]["0.01"] >= loss["tpr_at_fpr"]["0.01"]
    assert online["tpr_at_fpr"]["0.01"] > 0.01  # better than chance at 1% FPR
    assert online["auc"] > loss["auc"]
    assert online["epsilon_lower_bound_ci95"][0] > 0.5


def test_regularised_low_dimensional_model_leaks_little(regularised_attacks: dict[str, dict[str, Any]],
                                                         overfit_attacks: dict[str, dict[str, Any]]) -> None:
    for attack in regularised_attacks.values():
        assert abs(attack["auc"] - 0.5) < 0.05, attack["name"]
        assert attack["epsilon_lower_bound_ci95"][0] <= 0.5, attack["name"]
    assert overfit_attacks["lira_online"]["auc"] > regularised_attacks["lira_online"]["auc"] + 0.1


# ------------------------------------------------------------------------------------ empirical ε


def test_empirical_epsilon_known_values() -> None:
    point, lo, hi = empirical_epsilon(0.5, 0.01, 10**6, 10**6, delta=1e-5)
    assert point == pytest.approx(math.log((0.5 - 1e-5) / 0.01), abs=1e-12)
    assert abs(point - math.log(50)) < 1e-3 and lo < point < hi and hi - lo < 0.1
    # the symmetric (true-negative) test: 1 − FPR = 0.5, 1 − TPR = 0.01
    point, lo, hi = empirical_epsilon(0.99, 0.5, 10**6, 10**6, delta=0.0)
    assert point == pytest.approx(math.log(50), abs=1e-9)
    # fewer samples: wider interval, still ordered
    point_small, lo_small, hi_small = empirical_epsilon(0.5, 0.01, 1000, 1000, delta=1e-5)
    assert lo_small < lo and hi_small > hi and lo_small <= point_small <= hi_small
    # no false positives: the plug-in is unbounded; the conservative end uses one-sided 97.5% CP bounds
    point, lo, hi = empirical_epsilon(0.2, 0.0, 1000, 1000, delta=1e-5)
    tpr_lo, fpr_hi = stats.beta.ppf(0.025, 200, 801), 1 - 0.025 ** (1 / 1000)
    assert point == hi == math.inf and lo == pytest.approx(math.log((tpr_lo - 1e-5) / fpr_hi), rel=1e-9)


@pytest.mark.parametrize("tpr,fpr", [(0.3, 0.3), (0.1, 0.4), (0.0, 0.0), (1.0, 1.0), (0.0, 1.0)])
def test_empirical_epsilon_is_zero_without_advantage(tpr: float, fpr: float) -> None:
    point, lo, hi = empirical_epsilon(tpr, fpr, 1000, 1000, delta=1e-5)
    assert point == 0.0 and lo == 0.0 and hi >= 0.0


def test_empirical_epsilon_interval_contains_point_and_covers_truth() -> None:
    rng = np.random.default_rng(3)
    true_tpr, true_fpr, n = 0.3, 0.05, 400
    true_eps = max(math.log(true_tpr / true_fpr), math.log((1 - true_fpr) / (1 - true_tpr)))
    covered = 0
    for _ in range(400):
        point, lo, hi = empirical_epsilon(rng.binomial(n, true_tpr) / n, rng.binomial(n, true_fpr) / n, n, n, 0.0)
        assert lo <= point <= hi
        covered += lo <= true_eps
    assert covered / 400 >= 0.95  # the lower end is a conservative 95% bound


def test_empirical_epsilon_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="whole counts"):
        empirical_epsilon(0.5, 0.0015, 1000, 1000, 1e-5)
    with pytest.raises(ValueError, match="delta"):
        empirical_epsilon(0.5, 0.1, 10, 10, 1.5)
    with pytest.raises(ValueError, match="at least one"):
        empirical_epsilon(0.5, 0.1, 0, 10, 1e-5)


# ------------------------------------------------------------------------- determinism and plumbing


def test_audit_is_deterministic_given_seed() -> None:
    first = _audit(300, 20, OVERFIT, seed=5, n_shadow=4)
    assert first == _audit(300, 20, OVERFIT, seed=5, n_shadow=4)
    assert first["lira_online"] != _audit(300, 20, OVERFIT, seed=6, n_shadow=4)["lira_online"]


def test_shadows_are_balanced_and_reusable() -> None:
    X, y = _dataset(200, 5, 0)
    train_fn = _logistic_train_fn(REGULARISED)
    shadows = train_shadow_models(train_fn, _logistic_score, X, y, n_shadow=6, seed=4)
    assert shadows.phi.shape == (6, 200) and np.all(shadows.keep.sum(axis=0) == 3)
    mask = np.random.default_rng(0).random(200) < 0.5
    target = train_fn(X[mask], y[mask], 7)
    fresh = lira_attack(train_fn, _logistic_score, X, y, target_model=target, target_member_mask=mask,
                        n_shadow=6, seed=4)
    reused = lira_attack(train_fn, _logistic_score, X, y, target_model=target, target_member_mask=mask,
                         n_shadow=6, seed=4, shadows=shadows)
    assert isinstance(fresh, AttackResult) and fresh == reused


def test_report_shape_and_claim_check() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(400, 2)), rng.integers(0, 2, 400).astype(float)
    mask = rng.random(400) < 0.5
    target = _memoriser_train(X[mask], y[mask], 0)
    report = audit_membership(_memoriser_train, _memoriser_score, X, y, target_model=target,
                              target_member_mask=mask, n_shadow=2, seed=0, claimed_epsilon=1.0)
    json.dumps(report, allow_nan=False)
    assert [a["name"] for a in report["attacks"]] == ["loss_threshold", "lira_offline", "lira_online"]
    assert report["claimed"]["violated"] and len(report["claimed"]["exceeded_by"]) == 3
    assert any("cannot be resolved" in note for note in report["notes"])  # ~200 non-members < 1/0.001
    assert set(report["attacks"][0]["tpr_at_fpr"]) >= {"0.01", "0.001"}
    no_claim = audit_membership(_memoriser_train, _memoriser_score, X, y, target_model=target,
                                target_member_mask=mask, n_shadow=2, seed=0)
    assert no_claim["claimed"] is None


def test_bad_inputs_fail_loudly() -> None:
    X, y = np.zeros((10, 2)), np.zeros(10)
    mask = np.arange(10) < 5
    with pytest.raises(ValueError, match="boolean"):
        lira_attack(_blind_train, _blind_score, X, y, target_model=0, target_member_mask=mask.astype(int), seed=0)
    with pytest.raises(ValueError, match="one member and one non-member"):
        lira_attack(_blind_train, _blind_score, X, y, target_model=0, target_member_mask=np.ones(10, bool), seed=0)
    with pytest.raises(ValueError, match="n_shadow"):
        lira_attack(_blind_train, _blind_score, X, y, target_model=0, target_member_mask=mask, n_shadow=1, seed=0)
    with pytest.raises(ValueError, match="one confidence per row"):
        lira_attack(_blind_train, lambda m, X, y: np.full(3, 0.5), X, y, target_model=0, target_member_mask=mask,
                    n_shadow=2, seed=0)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        lira_attack(_blind_train, lambda m, X, y: np.full(10, 1.5), X, y, target_model=0, target_member_mask=mask,
                    n_shadow=2, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        loss_threshold_attack(np.array([np.nan]), np.array([0.5]))


def test_lira_uses_global_variance_with_few_shadows() -> None:
    # Row 0's OUT φ barely moves across shadows, row 1's moves a lot; both have mean 0 and IN mean 2.
    out0, out1 = np.array([-0.01, 0.01] * 4), np.array([-2.0, 2.0] * 4)
    phi = np.stack([np.concatenate([out0, 2 + out0]), np.concatenate([out1, 2 + out1])], axis=1)
    keep = np.repeat(np.arange(16) >= 8, 2).reshape(16, 2)
    shadows = ShadowScores(phi=phi, keep=keep)
    mask = np.array([True, False])
    target_phi = np.array([1.0, 1.0])
    pooled = lira_from_shadows(shadows, target_phi, mask, online=False)  # 8 samples < 32: one shared σ
    assert pooled.auc == 0.5  # same mean, same σ, same φ: indistinguishable
    own = lira_from_shadows(shadows, target_phi, mask, online=False, min_samples_own_std=8)
    assert own.auc == 1.0  # φ = 1 is far out for the steady row 0, ordinary for the noisy row 1
