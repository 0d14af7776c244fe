"""Logistic regression: the workhorse of credit scoring.

``sample_weight`` (optional, per example) scales each example's loss and gradient: class weights for
imbalanced labels (`sampan.models.class_weights`). Clipping (`clipped_grad_sum`) applies to the weighted
gradient, so the DP-SGD sensitivity stays ``max_norm`` whatever the weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sampan.models.base import Model, sigmoid


class LogisticRegression(Model):
    """params = [w_1..w_d, b]."""

    kind = "logistic"

    def __init__(self, n_features: int) -> None:
        if n_features < 1:
            raise ValueError("logistic regression needs at least one feature")
        self.n_features = n_features

    @property
    def n_params(self) -> int:
        return self.n_features + 1

    def init_params(self, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(self.n_params)  # convex: zero is the canonical start

    def logits(self, params: np.ndarray, X: np.ndarray) -> np.ndarray:
        return X @ params[:-1] + params[-1]

    def loss_and_grad(self, params: np.ndarray, X: np.ndarray, y: np.ndarray,
                      sample_weight: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        z = self.logits(params, X)
        residual = sigmoid(z) - y
        losses = np.logaddexp(0.0, z) - y * z
        if sample_weight is not None:
            residual, losses = residual * sample_weight, losses * sample_weight
        n = len(y)
        grad = np.empty(self.n_params)
        grad[:-1] = X.T @ residual / n
        grad[-1] = residual.sum() / n
        return float(losses.sum()) / n, grad

    def per_example_grads(self, params: np.ndarray, X: np.ndarray, y: np.ndarray,
                          sample_weight: np.ndarray | None = None) -> np.ndarray:
        residual = sigmoid(self.logits(params, X)) - y
        if sample_weight is not None:
            residual = residual * sample_weight
        out = np.empty((len(y), self.n_params))
        np.multiply(X, residual[:, None], out=out[:, :-1])
        out[:, -1] = residual
        return out

    def clipped_grad_sum(self, params: np.ndarray, X: np.ndarray, y: np.ndarray, max_norm: float,
                         sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, int, float]:
        """Ghost clipping: example i's gradient is r_i·[x_i, 1], so its norm is |r_i|·sqrt(|x_i|² + 1)
        (r_i already weighted: the clip bounds the weighted gradient)."""
        z = self.logits(params, X)
        residual = sigmoid(z) - y
        losses = np.logaddexp(0.0, z) - y * z
        if sample_weight is not None:
            residual, losses = residual * sample_weight, losses * sample_weight
        norms = np.abs(residual) * np.sqrt(np.einsum("ij,ij->i", X, X) + 1.0)
        factors = np.minimum(1.0, max_norm / np.maximum(norms, 1e-12))
        weighted = residual * factors
        out = np.empty(self.n_params)
        out[:-1] = X.T @ weighted
        out[-1] = weighted.sum()
        return out, int(np.count_nonzero(factors < 1.0)), float(losses.sum())

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "n_features": self.n_features}
