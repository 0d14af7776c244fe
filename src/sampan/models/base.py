"""Model interface shared by every learner, strategy and DP wrapper.

Parameters are one flat float64 vector: strategies, aggregators, clipping and secure aggregation all
work on vectors, and the model alone knows how to view it as layers. Every model exposes exact
per-example gradients (DP-SGD clips them one by one) as well as the cheaper mean gradient.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from scipy.special import expit


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (SciPy's vectorised expit)."""
    return expit(np.asarray(z, dtype=np.float64))


def binary_cross_entropy_from_logits(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-example BCE computed from logits (stable for large |z|)."""
    return np.logaddexp(0.0, z) - y * z


class Model(ABC):
    """A binary classifier over float64 features with flat parameters."""

    kind: str

    @property
    @abstractmethod
    def n_params(self) -> int: ...

    @abstractmethod
    def init_params(self, rng: np.random.Generator) -> np.ndarray: ...

    @abstractmethod
    def logits(self, params: np.ndarray, X: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def loss_and_grad(self, params: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean BCE over the batch and its gradient (no regularisation: the trainer adds it)."""

    @abstractmethod
    def per_example_grads(self, params: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(batch, n_params) matrix whose row i is the gradient of example i's loss."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-able description from which `model_from_config` rebuilds the model."""

    def clipped_grad_sum(self, params: np.ndarray, X: np.ndarray, y: np.ndarray,
                         max_norm: float) -> tuple[np.ndarray, int, float]:
        """Sum over examples of each gradient clipped to L2 norm <= max_norm (the DP-SGD core).

        Returns (sum, how many were clipped, summed loss). This generic version materialises the
        (batch, n_params) per-example matrix; models override it with ghost clipping (norms from
        layer activations and output gradients, no per-example matrix), which gives the same result.
        """
        grads = self.per_example_grads(params, X, y)
        norms = np.sqrt(np.einsum("ij,ij->i", grads, grads))
        factors = np.minimum(1.0, max_norm / np.maximum(norms, 1e-12))
        loss = float((binary_cross_entropy_from_logits(self.logits(params, X), y)).sum())
        return factors @ grads, int(np.count_nonzero(factors < 1.0)), loss

    def predict_proba(self, params: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class (default) per row."""
        return sigmoid(self.logits(params, X))

    def loss(self, params: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(binary_cross_entropy_from_logits(self.logits(params, X), y)))

    def check_params(self, params: np.ndarray) -> np.ndarray:
        params = np.asarray(params, dtype=np.float64)
        if params.shape != (self.n_params,):
            raise ValueError(f"{self.kind} expects {self.n_params} parameters, got shape {params.shape}")
        return params
