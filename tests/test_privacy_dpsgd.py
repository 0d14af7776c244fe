"""DP-SGD: clipping bounds each example's influence, noise has the promised scale, and it still learns."""

from __future__ import annotations

import numpy as np
import pytest

from sampan.horizontal import TrainConfig, train
from sampan.metrics import roc_auc
from sampan.models import MLP, LogisticRegression
from sampan.models.base import sigmoid
from sampan.privacy.dpsgd import DPSGDConfig, clip_rows, dp_sgd_train, planned_steps


def _problem(n: int = 2000, d: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (rng.random(n) < sigmoid(X @ np.linspace(-1.5, 1.5, d) - 0.5)).astype(np.int8)
    return X, y


def test_clip_rows_bounds_every_norm_and_keeps_small_rows() -> None:
    rng = np.random.default_rng(1)
    grads = rng.normal(size=(200, 9)) * rng.uniform(0.01, 10, size=(200, 1))
    original = grads.copy()
    clipped, k = clip_rows(grads, 1.0)
    norms = np.linalg.norm(clipped, axis=1)
    assert np.all(norms <= 1.0 + 1e-12)
    small = np.linalg.norm(original, axis=1) <= 1.0
    np.testing.assert_array_equal(clipped[small], original[small])
    assert k == int((~small).sum()) and k > 0


@pytest.mark.parametrize("model", [LogisticRegression(5), MLP(5, (8,))], ids=["logistic", "mlp"])
def test_one_record_moves_the_clipped_sum_by_at_most_c(model) -> None:
    """The sensitivity argument: remove any one row, the clipped gradient sum moves by <= C."""
    X, y = _problem(n=64)
    params = model.init_params(np.random.default_rng(0)) + 0.3
    grads, _ = clip_rows(model.per_example_grads(params, X, y), 0.5)
    total = grads.sum(axis=0)
    for i in range(len(X)):
        assert np.linalg.norm(total - np.delete(grads, i, axis=0).sum(axis=0)) <= 0.5 + 1e-12


def test_without_noise_full_batch_dp_sgd_is_clipped_gradient_descent() -> None:
    X, y = _problem(n=300)
    model = LogisticRegression(5)
    cfg = TrainConfig(max_steps=1, batch_size=300, learning_rate=0.5, l2=0.0)
    dp = dp_sgd_train(model, np.zeros(6), X, y, cfg, DPSGDConfig(noise_multiplier=0.0, max_grad_norm=1e9,
                                                                  sampling_rate=1.0))
    plain = train(model, np.zeros(6), X, y, cfg, np.random.default_rng(0))
    np.testing.assert_allclose(dp.result.params, plain.params, rtol=1e-12, atol=1e-14)
    assert dp.steps == 1 and dp.clipped_fraction == 0.0


def test_noise_has_the_promised_standard_deviation() -> None:
    """One full-batch step with lr 1 from zero: params = -(clipped sum + N(0, (zC)^2)) / n."""
    X, y = _problem(n=100)
    model = LogisticRegression(5)
    cfg = TrainConfig(max_steps=1, batch_size=100, learning_rate=1.0, l2=0.0)
    z, c = 2.0, 0.1
    runs = np.array([
        dp_sgd_train(model, np.zeros(6), X, y, cfg, DPSGDConfig(z, c, sampling_rate=1.0),
                     noise_rng=np.random.default_rng(seed)).result.params
        for seed in range(2000)
    ])
    expected = z * c / 100
    np.testing.assert_allclose(runs.std(axis=0), expected, rtol=0.08)


def test_dp_sgd_still_learns_and_reports_its_accounting_inputs() -> None:
    X, y = _problem(n=4000)
    model = LogisticRegression(5)
    cfg = TrainConfig(epochs=3, batch_size=100, learning_rate=0.5, l2=0.0)
    dp_cfg = DPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0)
    out = dp_sgd_train(model, np.zeros(6), X, y, cfg, dp_cfg)
    assert (out.steps, out.sampling_rate) == planned_steps(4000, cfg, dp_cfg) == (120, 0.025)
    assert roc_auc(y, model.predict_proba(out.result.params, X)) > 0.8


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="max_grad_norm"):
        DPSGDConfig(1.0, 0.0)
    with pytest.raises(ValueError, match="sampling_rate"):
        DPSGDConfig(1.0, 1.0, sampling_rate=1.5)


@pytest.mark.parametrize("model", [LogisticRegression(5), MLP(5, (8,)), MLP(5, (6, 4))],
                         ids=["logistic", "mlp", "mlp2"])
def test_ghost_clipping_equals_materialised_per_example_clipping(model) -> None:
    """The fast path must give exactly what clipping each materialised per-example gradient gives."""
    from sampan.models.base import Model

    X, y = _problem(n=200)
    params = model.init_params(np.random.default_rng(4)) + 0.2
    for max_norm in (0.05, 0.5, 50.0):
        fast, k_fast, loss_fast = model.clipped_grad_sum(params, X, y, max_norm)
        slow, k_slow, loss_slow = Model.clipped_grad_sum(model, params, X, y, max_norm)
        np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-12)
        assert k_fast == k_slow and loss_fast == pytest.approx(loss_slow, rel=1e-12)
        reference, _ = clip_rows(model.per_example_grads(params, X, y), max_norm)
        np.testing.assert_allclose(fast, reference.sum(axis=0), rtol=1e-10, atol=1e-12)


def test_poisson_sample_has_the_right_size_distribution() -> None:
    from sampan.privacy.dpsgd import poisson_sample

    rng = np.random.default_rng(0)
    sizes = np.array([poisson_sample(rng, 10_000, 0.01).size for _ in range(3000)])
    assert abs(sizes.mean() - 100) < 1.0 and abs(sizes.var() - 99) < 8  # Binomial(10000, 0.01)
    idx = poisson_sample(rng, 50, 0.5)
    assert len(set(idx.tolist())) == idx.size and np.all((idx >= 0) & (idx < 50))
    counts = np.bincount(np.concatenate([poisson_sample(rng, 20, 0.3) for _ in range(20000)]), minlength=20)
    np.testing.assert_allclose(counts / 20000, 0.3, atol=0.015)  # every row equally likely
