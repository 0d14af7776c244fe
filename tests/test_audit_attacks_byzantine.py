"""Byzantine clients and a model-replacement backdoor against plain FedAvg of logistic regression: each attack
hurts the undefended mean and fails against a reference defence (issue 16, security)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

from sampan.audit import (
    add_trigger,
    alie,
    alie_z,
    coordinate_median,
    fedavg,
    measure_attack,
    model_replacement_backdoor,
    norm_clip,
    scaling,
    sign_flip,
)
from sampan.errors import DataError

D = 6  # 5 informative features + 1 trigger column that honest rows leave at 0
TRUE_W = np.array([1.5, -2.0, 1.0, 0.5, -1.0, 0.0])


def _data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    X = rng.standard_normal((n, D))
    X[:, 5] = 0.0
    y = (rng.random(n) < expit(X @ TRUE_W)).astype(float)
    return X, y


def _local(model: np.ndarray, X: np.ndarray, y: np.ndarray, steps: int = 5, lr: float = 0.5) -> np.ndarray:
    """Local GD from the global model; returns the new model (coefficients then intercept)."""
    w = model.copy()
    for _ in range(steps):
        r = expit(X @ w[:-1] + w[-1]) - y
        w[:-1] -= lr * X.T @ r / len(y)
        w[-1] -= lr * r.mean()
    return w


@pytest.fixture(scope="module")
def federation() -> dict[str, object]:
    rng = np.random.default_rng(41)  # seeded: reproducible test
    clients = [_data(rng, 200) for _ in range(10)]
    X_test, y_test = _data(rng, 2000)
    return {"clients": clients, "test": (X_test, y_test)}


def _train(federation: dict[str, object], attack: str | None, aggregate, rounds: int = 15) -> np.ndarray:
    clients = federation["clients"]
    G = np.zeros(D + 1)
    for _ in range(rounds):
        deltas = np.array([_local(G, X, y) - G for X, y in clients])  # type: ignore[attr-defined]
        if attack == "sign_flip_scaled":
            deltas[:2] = [scaling(sign_flip(d), 10.0) for d in deltas[:2]]
        G = G + aggregate(deltas)
    return G


def test_sign_flip_with_scaling_breaks_fedavg_but_not_the_median(federation: dict[str, object]) -> None:
    X_test, y_test = federation["test"]  # type: ignore[misc]
    clean = _train(federation, None, fedavg)
    attacked = _train(federation, "sign_flip_scaled", fedavg)
    impact = measure_attack(clean, attacked, X_test, y_test)
    assert impact.accuracy_clean > 0.75
    assert impact.accuracy_drop > 0.2  # the undefended mean is taken over
    assert impact.accuracy_attacked_ci[1] < impact.accuracy_clean_ci[0]
    defended = measure_attack(clean, _train(federation, "sign_flip_scaled", coordinate_median), X_test, y_test)
    assert defended.accuracy_drop < 0.03  # the attack fails against a robust aggregate
    json.dumps(impact.to_dict())


def test_alie_shifts_the_mean_by_the_formula_and_stays_inside_the_benign_spread() -> None:
    rng = np.random.default_rng(42)
    n, f = 10, 2
    benign = rng.normal(0.5, 1.0, (n - f, 200))
    z = alie_z(n, f)
    assert z == pytest.approx(stats.norm.ppf((n - (n // 2 + 1 - f)) / n))
    bad = alie(benign, n, f)
    mu, sd = benign.mean(axis=0), benign.std(axis=0)
    aggregate = fedavg(np.vstack([benign, np.tile(bad, (f, 1))]))
    np.testing.assert_allclose(aggregate, mu - (f / n) * z * sd)
    inside = (bad >= benign.min(axis=0)) & (bad <= benign.max(axis=0))
    assert inside.mean() > 0.95  # each coordinate looks like a benign value
    # ALIE also drags a coordinate-wise median the same way (the paper's point: median is no defence).
    assert (coordinate_median(np.vstack([benign, np.tile(bad, (f, 1))])) - np.median(benign, axis=0)).mean() < 0
    with pytest.raises(DataError):
        alie_z(4, 0)


def test_model_replacement_backdoor_takes_fedavg_and_fails_under_norm_clipping(
    federation: dict[str, object],
) -> None:
    clients = federation["clients"]
    X_test, y_test = federation["test"]  # type: ignore[misc]
    G = _train(federation, None, fedavg, rounds=10)
    X_att, y_att = clients[0]  # type: ignore[index]
    poison = add_trigger(X_att[:100], 5, 4.0)
    backdoored = _local(G, np.vstack([X_att, poison]), np.append(y_att, np.ones(100)), steps=300)
    n = len(clients)  # type: ignore[arg-type]
    submitted = [model_replacement_backdoor(G, backdoored, n=n, eta=1.0)]
    submitted += [_local(G, X, y) for X, y in clients[1:]]  # type: ignore[index]
    deltas = np.array(submitted) - G
    trigger = add_trigger(X_test[y_test == 0], 5, 4.0)

    undefended = G + fedavg(deltas)
    hit = measure_attack(G, undefended, X_test, y_test, trigger_rows=trigger, target_label=1)
    assert hit.attack_success_rate is not None and hit.attack_success_rate > 0.9
    assert hit.accuracy_drop < 0.05  # stealthy: the main task still works

    bound = float(np.median(np.linalg.norm(deltas[1:], axis=1)))
    defended = G + fedavg(norm_clip(deltas, bound))
    miss = measure_attack(G, defended, X_test, y_test, trigger_rows=trigger, target_label=1)
    assert miss.attack_success_rate is not None and miss.attack_success_rate < 0.3
    assert miss.attack_success_ci is not None and miss.attack_success_ci[1] < hit.attack_success_ci[0]


def test_transforms_check_inputs() -> None:
    assert np.array_equal(sign_flip([1.0, -2.0]), [-1.0, 2.0])
    assert np.array_equal(scaling([1.0, 2.0], 3.0), [3.0, 6.0])
    with pytest.raises(DataError):
        model_replacement_backdoor([0.0, 1.0], [1.0], n=3)
    with pytest.raises(DataError, match="weights"):
        measure_attack([0.0, 0.0], [0.0, 0.0, 0.0], np.zeros((2, 2)), [0, 1])
    with pytest.raises(DataError, match="target_label"):
        measure_attack([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], np.zeros((2, 2)), [0, 1], trigger_rows=np.zeros((1, 2)))
