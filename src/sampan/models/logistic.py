"""Logistic regression: the workhorse of credit scoring."""

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

    def loss_and_grad(self, params: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        z = self.logits(params, X)
        residual = sigmoid(z) - y
        n = len(y)
        grad = np.empty(self.n_params)
        grad[:-1] = X.T @ residual / n
        grad[-1] = residual.sum() / n
        loss = float((np.logaddexp(0.0, z) - y * z).sum()) / n
        return loss, grad

    def per_example_grads(self, params: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        residual = sigmoid(self.logits(params, X)) - y
        out = np.empty((len(y), self.n_params))
        np.multiply(X, residual[:, None], out=out[:, :-1])
        out[:, -1] = residual
        return out

    def clipped_grad_sum(self, params: np.ndarray, X: np.ndarray, y: np.ndarray,
                         max_norm: float) -> tuple[np.ndarray, int, float]:
        """Ghost clipping: example i's gradient is r_i·[x_i, 1], so its norm is |r_i|·sqrt(|x_i|² + 1)."""
        z = self.logits(params, X)
        residual = sigmoid(z) - y
        norms = np.abs(residual) * np.sqrt(np.einsum("ij,ij->i", X, X) + 1.0)
        factors = np.minimum(1.0, max_norm / np.maximum(norms, 1e-12))
        weighted = residual * factors
        out = np.empty(self.n_params)
        out[:-1] = X.T @ weighted
        out[-1] = weighted.sum()
        loss = float((np.logaddexp(0.0, z) - y * z).sum())
        return out, int(np.count_nonzero(factors < 1.0)), loss

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "n_features": self.n_features}
