"""Party-side local training: minibatch SGD or Adam with L2 and an optional FedProx term.

The same function trains the pooled baseline and every party's local epochs, so a federated-vs-pooled
comparison measures federation, not two different optimisers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from sampan.models.base import Model
from sampan.models.class_weights import ClassWeighted, class_weight_pair


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 0.1
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.0
    l2: float = 1e-4
    proximal_mu: float = 0.0  # FedProx: pull towards the round's global model
    max_steps: int | None = None  # FedAvg's K: stop after this many minibatches (less client drift)
    class_weight: tuple[float, float] | None = None  # (w0, w1): imbalanced labels (`sampan.models.class_weights`)

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_weight", class_weight_pair(self.class_weight))  # a JSON list -> tuple
        reals = {"learning_rate": self.learning_rate, "momentum": self.momentum, "l2": self.l2,
                 "proximal_mu": self.proximal_mu}
        for name, value in reals.items():  # a NaN passes every comparison below
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number (got {value!r})")
        for name, count in (("epochs", self.epochs), ("batch_size", self.batch_size), ("max_steps", self.max_steps)):
            if count is not None and (isinstance(count, bool) or not isinstance(count, numbers.Integral)):
                raise ValueError(f"{name} must be an integer (got {count!r})")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1 (got {self.epochs}, {self.batch_size})")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0 (got {self.learning_rate})")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam' (got {self.optimizer!r})")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 when set (got {self.max_steps})")
        if self.l2 < 0 or self.proximal_mu < 0 or not 0 <= self.momentum < 1:
            raise ValueError("l2 and proximal_mu must be >= 0 and momentum in [0, 1)")


# What a party trains with at a coordinator's request (`checked_train_config`): far above any useful setting,
# far below what makes an exact update overflow on standardised rows (review R12-HOR-5).
MAX_LEARNING_RATE = 100.0
MAX_EPOCHS = 1000
MAX_STEPS = 1_000_000
MAX_PENALTY = 1e4  # l2, proximal_mu


def checked_train_config(settings: Mapping[str, Any]) -> TrainConfig:
    """The `TrainConfig` of a training request, refused (ValueError) when a setting is malformed, non-finite or
    absurd. Checked from the request alone, before any row is touched: whether a party trains never depends on
    its data (a learning rate of 1e308 would make the exact update overflow iff its gradient is large)."""
    if not isinstance(settings, Mapping):
        raise ValueError(f"training settings must be a table (got {type(settings).__name__})")
    try:
        config = TrainConfig(**settings)
    except TypeError as exc:
        raise ValueError(f"training settings {dict(settings)}: {exc}") from None
    limits = [("learning_rate", config.learning_rate, MAX_LEARNING_RATE), ("epochs", config.epochs, MAX_EPOCHS),
              ("max_steps", config.max_steps or 0, MAX_STEPS), ("l2", config.l2, MAX_PENALTY),
              ("proximal_mu", config.proximal_mu, MAX_PENALTY)]
    for name, value, limit in limits:
        if value > limit:
            raise ValueError(f"{name}={value!r} is above the {limit:g} a party trains with")
    return config


@dataclass(frozen=True)
class TrainResult:
    params: np.ndarray
    mean_loss: float  # average minibatch loss over the last epoch
    steps: int
    examples: int


class _Adam:
    def __init__(self, dim: int, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.m, self.v = np.zeros(dim), np.zeros(dim)
        self.lr, self.b1, self.b2, self.eps, self.t = lr, beta1, beta2, eps, 0

    def step(self, params: np.ndarray, grad: np.ndarray) -> None:
        self.t += 1
        self.m *= self.b1
        self.m += (1 - self.b1) * grad
        self.v *= self.b2
        self.v += (1 - self.b2) * grad * grad
        m_hat = self.m / (1 - self.b1**self.t)
        v_hat = self.v / (1 - self.b2**self.t)
        params -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class LocalOptimizer:
    """SGD / momentum / Adam with L2 and the FedProx pull, shared by plain and DP-SGD training.

    Regularisation terms depend only on the parameters (public to the party), never on data, so
    adding them after DP noise costs no privacy.
    """

    def __init__(self, params: np.ndarray, config: TrainConfig, anchor: np.ndarray | None) -> None:
        self.config = config
        self.anchor = params.copy() if anchor is None and config.proximal_mu > 0 else anchor
        self.adam = _Adam(len(params), config.learning_rate) if config.optimizer == "adam" else None
        self.velocity = np.zeros_like(params) if config.momentum > 0 else None

    def step(self, params: np.ndarray, grad: np.ndarray) -> None:
        """Update `params` in place from a data gradient (which may be modified)."""
        config = self.config
        if config.l2:
            grad += config.l2 * params
        if config.proximal_mu and self.anchor is not None:
            grad += config.proximal_mu * (params - self.anchor)
        if self.adam is not None:
            self.adam.step(params, grad)
        elif self.velocity is not None:
            self.velocity *= config.momentum
            self.velocity += grad
            params -= config.learning_rate * self.velocity
        else:
            params -= config.learning_rate * grad


# Rows gathered at a time for local training: a whole number of minibatches near 65,536 rows, so a party holds
# one chunk of float64 rows (~16 MB at 30 features) instead of a permuted copy of its whole table per epoch.
CHUNK_ROWS = 1 << 16


class Rows(Protocol):
    """What `train` needs of a party's rows: their count and ``rows[indices]`` as a float64 matrix (an ndarray,
    or a lazy view that fills and standardises only the rows asked for, `sampan.horizontal.party_rows`)."""

    def __len__(self) -> int: ...

    def __getitem__(self, idx: Any) -> np.ndarray: ...


def train(
    model: Model,
    params: np.ndarray,
    X: np.ndarray | Rows,
    y: np.ndarray,
    config: TrainConfig,
    rng: np.random.Generator,
    anchor: np.ndarray | None = None,
) -> TrainResult:
    """Train from `params` (not modified): `config.epochs` shuffled passes over (X, y), or exactly
    `config.max_steps` minibatches when that is set (continuing into a fresh shuffle as needed).

    Each epoch's shuffled rows are gathered a chunk of whole minibatches at a time (float64), so memory stays
    at one chunk whatever the table's size; the minibatches, and so the result, are those of one permuted copy."""
    n = len(X)
    if n == 0:
        raise ValueError("cannot train on zero rows")
    params = model.check_params(params).copy()
    if config.class_weight is not None and not isinstance(model, ClassWeighted):
        model = ClassWeighted(model, config.class_weight)
    optimizer = LocalOptimizer(params, config, anchor)
    bs = config.batch_size
    chunk = bs * max(1, CHUNK_ROWS // bs)
    steps = examples = 0
    epoch_loss = 0.0
    budget = config.max_steps if config.max_steps is not None else config.epochs * -(-n // bs)
    while steps < budget:
        order = rng.permutation(n)
        if budget - steps < -(-n // bs):
            order = order[: (budget - steps) * bs]  # only the rows this partial epoch will visit
        epoch_loss, batches = 0.0, 0
        for first in range(0, len(order), chunk):
            idx = order[first:first + chunk]
            Xs = np.asarray(X[idx], dtype=np.float64)
            ys = y[idx].astype(np.float64)
            for start in range(0, len(idx), bs):
                loss, grad = model.loss_and_grad(params, Xs[start:start + bs], ys[start:start + bs])
                optimizer.step(params, grad)
                epoch_loss += loss
                batches += 1
            del Xs, ys  # freed before the next chunk is gathered: one chunk alive, not two (review R15-HLR-1)
        epoch_loss /= batches
        steps += batches
        examples += len(order)
    return TrainResult(params=params, mean_loss=float(epoch_loss), steps=steps, examples=examples)
