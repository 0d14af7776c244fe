"""Models: gradients match finite differences; per-example gradients average to the batch gradient."""

from __future__ import annotations

import numpy as np
import pytest

from sampan.models import MLP, LogisticRegression, model_from_config
from sampan.models.base import sigmoid

MODELS = [LogisticRegression(5), MLP(5, (7,)), MLP(5, (6, 4))]


def _data(n: int = 40, d: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, (rng.random(n) < sigmoid(X[:, 0] - X[:, 1])).astype(float)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: f"{m.kind}{getattr(m, 'hidden', '')}")
def test_gradient_matches_finite_differences(model) -> None:
    X, y = _data()
    params = model.init_params(np.random.default_rng(1)) + np.random.default_rng(2).normal(0, 0.1, model.n_params)
    _, grad = model.loss_and_grad(params, X, y)
    eps = 1e-6
    numeric = np.array([
        (model.loss(params + eps * e, X, y) - model.loss(params - eps * e, X, y)) / (2 * eps)
        for e in np.eye(model.n_params)
    ])
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: f"{m.kind}{getattr(m, 'hidden', '')}")
def test_per_example_gradients_are_exact(model) -> None:
    X, y = _data(n=12)
    params = model.init_params(np.random.default_rng(3)) + 0.05
    per_example = model.per_example_grads(params, X, y)
    assert per_example.shape == (12, model.n_params)
    np.testing.assert_allclose(per_example.mean(axis=0), model.loss_and_grad(params, X, y)[1], rtol=1e-10, atol=1e-12)
    for i in (0, 7):  # each row is the gradient of that single example
        np.testing.assert_allclose(per_example[i], model.loss_and_grad(params, X[i:i + 1], y[i:i + 1])[1],
                                   rtol=1e-10, atol=1e-12)


def test_sigmoid_is_stable_at_extremes() -> None:
    z = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])
    p = sigmoid(z)
    assert np.all(np.isfinite(p)) and p[0] == 0.0 and p[2] == 0.5 and p[-1] == 1.0


def test_config_round_trip_and_errors() -> None:
    for model in MODELS:
        rebuilt = model_from_config(model.config())
        assert rebuilt.n_params == model.n_params and rebuilt.config() == model.config()
    with pytest.raises(ValueError, match="unknown model kind"):
        model_from_config({"kind": "forest"})
    with pytest.raises(ValueError, match="expects 6 parameters"):
        LogisticRegression(5).check_params(np.zeros(3))
