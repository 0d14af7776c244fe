"""A small multilayer perceptron (ReLU hidden layers, logistic output) with exact per-example gradients.

``sample_weight`` (optional, per example) scales each example's output gradient and loss (class weights,
`sampan.models.class_weights`); ghost clipping then bounds the weighted gradient, so DP-SGD's sensitivity is
unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sampan.models.base import Model, sigmoid


class MLP(Model):
    """Layers are stored flat as [W1, b1, W2, b2, ..., w_out, b_out]."""

    kind = "mlp"

    def __init__(self, n_features: int, hidden: Sequence[int] = (32,)) -> None:
        if n_features < 1 or not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"MLP needs n_features >= 1 and positive hidden sizes, got {n_features}, {hidden}")
        self.n_features = n_features
        self.hidden = tuple(int(h) for h in hidden)
        sizes = (n_features, *self.hidden, 1)
        self._shapes: list[tuple[tuple[int, int], tuple[int]]] = [
            ((sizes[i], sizes[i + 1]), (sizes[i + 1],)) for i in range(len(sizes) - 1)
        ]
        self._slices: list[tuple[slice, slice]] = []
        offset = 0
        for (w_shape, b_shape) in self._shapes:
            w_end = offset + w_shape[0] * w_shape[1]
            b_end = w_end + b_shape[0]
            self._slices.append((slice(offset, w_end), slice(w_end, b_end)))
            offset = b_end
        self._n_params = offset

    @property
    def n_params(self) -> int:
        return self._n_params

    def _layers(self, params: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        return [
            (params[ws].reshape(w_shape), params[bs])
            for (ws, bs), (w_shape, _) in zip(self._slices, self._shapes, strict=True)
        ]

    def init_params(self, rng: np.random.Generator) -> np.ndarray:
        """Looks-linear init (Balduzzi et al. 2017, "The shattered gradients problem"): each layer's units come in
        mirrored pairs (W, −W), so relu(a) − relu(−a) = a and the network starts as an exact LINEAR model of its
        inputs: a small random one (first layer std 0.25/sqrt(fan_in), He-scaled output), close to logistic
        regression's zero start. Why: on small, mostly linear credit tables (German, South German) a He-initialised
        MLP starts from random ReLU features and ended 0.045 AUC below logistic regression after the default rounds;
        starting linear it matches LR there and still learns the non-linear part (Taiwan, +0.05).
        `bench/mlp_defaults_bench.py` measures it. An odd width's unpaired unit gets He weights in, zero out."""
        params = np.zeros(self.n_params)
        last = len(self._slices) - 1
        for layer, ((ws, _), ((fan_in, fan_out), _)) in enumerate(zip(self._slices, self._shapes, strict=True)):
            W = np.zeros((fan_in, fan_out))
            pairs_in, half = fan_in // 2, fan_out // 2
            if layer == 0:
                A = rng.normal(0.0, 0.25 / np.sqrt(fan_in), size=(fan_in, half))  # small: near the zero start
                W[:, :half], W[:, half:2 * half] = A, -A
            elif layer < last:  # (p, n) -> [B(p − n), −B(p − n)]: still linear in the input
                B = rng.normal(0.0, np.sqrt(1.0 / max(pairs_in, 1)), size=(pairs_in, half))
                W[:pairs_in, :half], W[pairs_in:2 * pairs_in, :half] = B, -B
                W[:pairs_in, half:2 * half], W[pairs_in:2 * pairs_in, half:2 * half] = -B, B
            else:
                v = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=pairs_in)
                W[:pairs_in, 0], W[pairs_in:2 * pairs_in, 0] = v, -v
            if layer < last and fan_out % 2:
                W[:, -1] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=fan_in)
            params[ws] = W.ravel()
        return params

    def _forward(self, params: np.ndarray, X: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        activations = [X]
        h = X
        layers = self._layers(params)
        for W, b in layers[:-1]:
            h = np.maximum(h @ W + b, 0.0)
            activations.append(h)
        W, b = layers[-1]
        return activations, (h @ W + b)[:, 0]

    def logits(self, params: np.ndarray, X: np.ndarray) -> np.ndarray:
        return self._forward(params, X)[1]

    def _backward(
        self, params: np.ndarray, X: np.ndarray, y: np.ndarray, per_example: bool,
        sample_weight: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        activations, z = self._forward(params, X)
        n = len(y)
        delta = _output_delta(z, y, sample_weight)  # dLoss_i/dz_i, shape (n, 1)
        grads = np.empty((n, self.n_params)) if per_example else np.empty(self.n_params)
        layers = self._layers(params)
        for layer in range(len(layers) - 1, -1, -1):
            a = activations[layer]
            ws, bs = self._slices[layer]
            if per_example:
                grads[:, ws] = np.einsum("ni,nj->nij", a, delta).reshape(n, -1)
                grads[:, bs] = delta
            else:
                grads[ws] = (a.T @ delta).ravel() / n
                grads[bs] = delta.sum(axis=0) / n
            if layer:
                W = layers[layer][0]
                delta = (delta @ W.T) * (activations[layer] > 0)
        return z, grads

    def clipped_grad_sum(self, params: np.ndarray, X: np.ndarray, y: np.ndarray, max_norm: float,
                         sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, int, float]:
        """Ghost clipping (Goodfellow 2015; Li et al. 2022): for a dense layer the per-example weight
        gradient is the outer product a_i δ_iᵀ, so its squared norm is |a_i|²·|δ_i|² (plus |δ_i|² for
        the bias). Norms come from activations and output gradients; the clipped sum is one matrix
        product per layer. Memory stays O(batch × width) instead of O(batch × n_params)."""
        activations, z = self._forward(params, X)
        layers = self._layers(params)
        delta = _output_delta(z, y, sample_weight)
        signals: list[tuple[np.ndarray, np.ndarray]] = []
        for layer in range(len(layers) - 1, -1, -1):
            signals.append((activations[layer], delta))
            if layer:
                delta = (delta @ layers[layer][0].T) * (activations[layer] > 0)
        norm_sq = np.zeros(len(y))
        for a, d in signals:
            d_sq = np.einsum("ij,ij->i", d, d)
            norm_sq += np.einsum("ij,ij->i", a, a) * d_sq + d_sq
        factors = np.minimum(1.0, max_norm / np.maximum(np.sqrt(norm_sq), 1e-12))
        out = np.empty(self.n_params)
        for layer, (a, d) in zip(range(len(layers) - 1, -1, -1), signals, strict=True):
            ws, bs = self._slices[layer]
            scaled = d * factors[:, None]
            out[ws] = (a.T @ scaled).ravel()
            out[bs] = scaled.sum(axis=0)
        return out, int(np.count_nonzero(factors < 1.0)), _loss_sum(z, y, sample_weight)

    def loss_and_grad(self, params: np.ndarray, X: np.ndarray, y: np.ndarray,
                      sample_weight: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        z, grad = self._backward(params, X, y, per_example=False, sample_weight=sample_weight)
        return _loss_sum(z, y, sample_weight) / len(y), grad

    def per_example_grads(self, params: np.ndarray, X: np.ndarray, y: np.ndarray,
                          sample_weight: np.ndarray | None = None) -> np.ndarray:
        return self._backward(params, X, y, per_example=True, sample_weight=sample_weight)[1]

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "n_features": self.n_features, "hidden": list(self.hidden)}


def _output_delta(z: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    """dLoss_i/dz_i as a column, scaled by the example's weight when there is one."""
    residual = sigmoid(z) - y
    return (residual if sample_weight is None else residual * sample_weight)[:, None]


def _loss_sum(z: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None) -> float:
    losses = np.logaddexp(0.0, z) - y * z
    return float((losses if sample_weight is None else losses * sample_weight).sum())
