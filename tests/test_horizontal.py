"""Strategies, aggregators and the local learner."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sampan.horizontal import (
    CoordinateMedian,
    FedAdam,
    FedAvg,
    FedProx,
    Krum,
    TrainConfig,
    TrimmedMean,
    WeightedMean,
    make_aggregator,
    make_strategy,
    train,
)
from sampan.metrics import roc_auc
from sampan.models import MLP, LogisticRegression
from sampan.models.base import sigmoid


def _feed(agg, updates, weights):
    agg.reset()
    for u, w in zip(updates, weights, strict=False):
        agg.add(u, w)
    return agg.result()


@settings(max_examples=50)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 5)), elements=st.floats(-1e3, 1e3)),
       st.data())
def test_weighted_mean_equals_numpy_average(updates: np.ndarray, data: st.DataObject) -> None:
    weights = data.draw(st.lists(st.floats(0.5, 100), min_size=len(updates), max_size=len(updates)))
    np.testing.assert_allclose(_feed(WeightedMean(), updates, weights),
                               np.average(updates, axis=0, weights=weights), rtol=1e-9, atol=1e-9)


def test_robust_aggregators_resist_one_outlier() -> None:
    honest = [np.array([1.0, 2.0]) + 0.01 * i for i in range(6)]
    attacker = np.array([1e6, -1e6])
    updates = honest + [attacker]
    for agg in (CoordinateMedian(), TrimmedMean(0.2), Krum(byzantine=1)):
        result = _feed(agg, updates, [1] * 7)
        assert np.all(np.abs(result - np.array([1.03, 2.03])) < 0.1), agg.name
    assert np.abs(_feed(WeightedMean(), updates, [1] * 7)).max() > 1e5  # the mean is not robust


def test_median_trimmed_krum_exact_values() -> None:
    ups = [np.array([v]) for v in (1.0, 2.0, 3.0, 4.0, 100.0)]
    assert _feed(CoordinateMedian(), ups, [1] * 5)[0] == 3.0
    assert _feed(TrimmedMean(0.2), ups, [1] * 5)[0] == 3.0
    krum = Krum(byzantine=1, multi=1)
    assert _feed(krum, ups, [1] * 5)[0] in (2.0, 3.0)


def test_aggregator_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="no updates"):
        WeightedMean().result()
    agg = WeightedMean()
    agg.reset()
    with pytest.raises(ValueError, match="NaN"):
        agg.add(np.array([np.nan]), 1)
    with pytest.raises(ValueError, match="needs at least 4"):
        _feed(Krum(byzantine=1), [np.zeros(2)] * 3, [1] * 3)
    with pytest.raises(ValueError, match="unknown aggregator"):
        make_aggregator("mode")


def test_strategies() -> None:
    g, delta = np.array([1.0, -1.0]), np.array([0.5, 0.5])
    np.testing.assert_allclose(FedAvg().apply(g, delta), [1.5, -0.5])
    assert FedProx(0.1).fit_config(3) == {"proximal_mu": 0.1}
    adam = FedAdam(server_learning_rate=0.1)
    first = adam.apply(g, delta)
    assert np.all(first > g)  # moves along the pseudo-gradient
    state = adam.state_dict()
    twin = FedAdam(server_learning_rate=0.1)
    twin.load_state_dict(state)
    np.testing.assert_array_equal(adam.apply(first, delta), twin.apply(first, delta))
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("fedsgd")
    with pytest.raises(ValueError, match="bad options"):
        make_strategy("fedavg", proximal_mu=1.0)


def _problem(n: int = 2000, d: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w = np.linspace(-1.5, 1.5, d)
    y = (rng.random(n) < sigmoid(X @ w - 1.0)).astype(np.int8)
    return X, y


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("model", [LogisticRegression(6), MLP(6, (16,))], ids=["logistic", "mlp"])
def test_local_training_learns(model, optimizer) -> None:
    X, y = _problem()
    cfg = TrainConfig(epochs=5, batch_size=64, learning_rate=0.05 if optimizer == "adam" else 0.2,
                      optimizer=optimizer, l2=1e-4)
    start = model.init_params(np.random.default_rng(0))
    result = train(model, start, X, y, cfg, np.random.default_rng(1))
    assert model.loss(result.params, X, y) < model.loss(start, X, y) - 0.05
    assert roc_auc(y, model.predict_proba(result.params, X)) > 0.8
    assert result.steps == 5 * int(np.ceil(2000 / 64)) and result.examples == 10_000


def test_training_is_deterministic_and_does_not_mutate_input() -> None:
    X, y = _problem()
    model = LogisticRegression(6)
    start = np.zeros(7)
    a = train(model, start, X, y, TrainConfig(), np.random.default_rng(5)).params
    b = train(model, start, X, y, TrainConfig(), np.random.default_rng(5)).params
    np.testing.assert_array_equal(a, b)
    assert not start.any()


def test_proximal_term_keeps_model_near_anchor() -> None:
    X, y = _problem()
    model = LogisticRegression(6)
    anchor = np.zeros(7)
    free = train(model, anchor, X, y, TrainConfig(epochs=3), np.random.default_rng(0)).params
    prox = train(model, anchor, X, y, TrainConfig(epochs=3, proximal_mu=5.0), np.random.default_rng(0)).params
    assert np.linalg.norm(prox - anchor) < 0.5 * np.linalg.norm(free - anchor)


def test_train_config_validation() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=0)


def test_fedavg_server_momentum_accumulates_and_checkpoints() -> None:
    g, delta = np.zeros(2), np.array([1.0, -1.0])
    plain = FedAvg()
    momentum = FedAvg(server_momentum=0.5)
    first = momentum.apply(g, delta)
    second = momentum.apply(first, delta)
    np.testing.assert_allclose(second - first, 1.5 * delta)  # velocity = 0.5 * delta + delta
    np.testing.assert_allclose(plain.apply(first, delta) - first, delta)
    twin = FedAvg(server_momentum=0.5)
    twin.load_state_dict(momentum.state_dict())
    np.testing.assert_array_equal(twin.apply(second, delta), momentum.apply(second, delta))
    with pytest.raises(ValueError, match="server_momentum"):
        FedAvg(server_momentum=1.0)


def test_max_steps_runs_exactly_that_many_minibatches() -> None:
    X, y = _problem(n=1000)
    model = LogisticRegression(6)
    short = train(model, np.zeros(7), X, y, TrainConfig(max_steps=5, batch_size=64), np.random.default_rng(0))
    assert short.steps == 5 and short.examples == 320
    long = train(model, np.zeros(7), X, y, TrainConfig(max_steps=40, batch_size=64), np.random.default_rng(0))
    assert long.steps == 40 and long.examples == 1000 + 1000 + 8 * 64  # 16 + 16 + 8 batches
    epochs = train(model, np.zeros(7), X, y, TrainConfig(epochs=2, batch_size=64), np.random.default_rng(0))
    assert epochs.steps == 32 and epochs.examples == 2000
