"""The optional Opacus path (runs where torch and opacus are installed, e.g. the benchmark venv)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("opacus")

from sampan.horizontal import TrainConfig  # noqa: E402
from sampan.metrics import roc_auc  # noqa: E402
from sampan.models.base import sigmoid  # noqa: E402
from sampan.privacy import DPSGDConfig  # noqa: E402
from sampan.privacy.opacus_dp2 import module_to_vector, opacus_dp_sgd_train, vector_to_module  # noqa: E402


def _mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def test_vector_round_trip_and_shape_check() -> None:
    module = _mlp()
    vector = np.random.default_rng(0).normal(size=module_to_vector(module).size)
    vector_to_module(module, vector)
    np.testing.assert_allclose(module_to_vector(module), vector, rtol=1e-6)
    with pytest.raises(ValueError, match="parameters"):
        vector_to_module(module, np.zeros(3))


def test_opacus_dp_sgd_learns_and_reports_accounting_inputs() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 5))
    y = (rng.random(3000) < sigmoid(X @ np.linspace(-1.5, 1.5, 5))).astype(np.float64)
    module = _mlp()
    out = opacus_dp_sgd_train(module, module_to_vector(module), X, y,
                              TrainConfig(epochs=3, batch_size=100, learning_rate=0.5, l2=0.0),
                              DPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0))
    assert (out.steps, out.sampling_rate) == (90, pytest.approx(100 / 3000))
    with torch.no_grad():
        vector_to_module(module, out.result.params)
        scores = module(torch.as_tensor(X, dtype=torch.float32)).reshape(-1).numpy()
    assert roc_auc(y, scores) > 0.8
