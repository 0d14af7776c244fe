"""Class weights for imbalanced labels: `[training] class_weight` and `target_positive_rate`.

Why weights, not resampling: a weight per class is two public numbers, the same at every party, and the
weighted loss is the same function of each row as the unweighted one, so federated averaging, DP-SGD and
SecAgg work unchanged. ``"balanced"`` is ``target_positive_rate = 0.5``; a target rate r on data with
positive rate π gives w1 = r/π and w0 = (1−r)/(1−π) (mean weight 1, so the learning rate keeps its
meaning). The coordinator resolves both from the pooled positive rate the parties already send in
`describe` (no new release); under DP that rate is not sent, so only explicit weights are accepted there.

DP-SGD: an example's gradient is weighted BEFORE it is clipped (`clipped_grad_sum` of each model takes
``sample_weight``), so each clipped gradient still has norm <= max_norm and the sensitivity is unchanged;
explicit weights are public constants, so they depend on no record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sampan.models.base import Model

__all__ = ["ClassWeighted", "class_weight_pair", "resolve_class_weight"]


def class_weight_pair(value: Any) -> tuple[float, float] | None:
    """(w0, w1) from a request's ``class_weight`` (a 2-list), refused (ValueError) unless finite and positive."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"class_weight must be [w0, w1] (got {value!r})")
    pair = []
    for w in value:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or not 0 < w <= 1e4:
            raise ValueError(f"class_weight entries must be finite numbers in (0, 1e4] (got {value!r})")
        pair.append(float(w))
    return pair[0], pair[1]


def resolve_class_weight(class_weight: str | Mapping[str, float] | None, target_positive_rate: float | None,
                         positive_rate: float | None) -> tuple[float, float] | None:
    """The (w0, w1) every party trains with, from the config and the pooled training positive rate."""
    if isinstance(class_weight, Mapping):
        return class_weight_pair([float(class_weight.get("0", 1.0)), float(class_weight.get("1", 1.0))])
    if class_weight is None and target_positive_rate is None:
        return None
    target = 0.5 if class_weight == "balanced" else target_positive_rate
    assert target is not None
    if positive_rate is None or not 0.0 < positive_rate < 1.0:
        raise ValueError("class weights from a target positive rate need the pooled training positive rate, and "
                         f"both labels in the training rows (got {positive_rate!r}); give explicit weights "
                         "[training] class_weight = {0 = 1.0, 1 = 5.0}")
    return class_weight_pair([(1.0 - target) / (1.0 - positive_rate), target / positive_rate])


class ClassWeighted(Model):
    """A model whose every loss and gradient weights example i by w[y_i]; parameters are the inner model's."""

    def __init__(self, inner: Model, weights: tuple[float, float]) -> None:
        self.inner, self.weights = inner, (float(weights[0]), float(weights[1]))
        self.kind = inner.kind

    def __getattr__(self, name: str) -> Any:  # n_features, hidden, ...: the inner model's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _w(self, y: np.ndarray) -> np.ndarray:
        return np.where(np.asarray(y) > 0.5, self.weights[1], self.weights[0])

    @property
    def n_params(self) -> int:
        return self.inner.n_params

    def init_params(self, rng: np.random.Generator) -> np.ndarray:
        return self.inner.init_params(rng)

    def logits(self, params: np.ndarray, X: np.ndarray) -> np.ndarray:
        return self.inner.logits(params, X)

    def loss_and_grad(self, params: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        return self.inner.loss_and_grad(params, X, y, sample_weight=self._w(y))  # type: ignore[call-arg]

    def per_example_grads(self, params: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.inner.per_example_grads(params, X, y) * self._w(y)[:, None]

    def clipped_grad_sum(self, params: np.ndarray, X: np.ndarray, y: np.ndarray,
                         max_norm: float) -> tuple[np.ndarray, int, float]:
        """Each example's gradient weighted, THEN clipped to max_norm: the DP-SGD sensitivity is unchanged."""
        return self.inner.clipped_grad_sum(params, X, y, max_norm,
                                           sample_weight=self._w(y))  # type: ignore[call-arg]

    def config(self) -> dict[str, Any]:
        return self.inner.config()
