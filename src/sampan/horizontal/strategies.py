"""Server-side strategies: what the coordinator asks of parties and how it moves the global model.

A strategy sees only the aggregated update (the mean delta, possibly robust, possibly noised by DP3,
possibly the unmasked sum from secure aggregation); it never sees an individual party's update.
Its state (e.g. FedAdam's moments) is part of every checkpoint so a resumed run is bit-identical.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class Strategy(ABC):
    name: str

    def fit_config(self, round_number: int) -> dict[str, Any]:
        """Extra training settings sent to each party this round."""
        return {}

    @abstractmethod
    def apply(self, global_params: np.ndarray, mean_update: np.ndarray) -> np.ndarray:
        """New global parameters from the current ones and the aggregated party delta."""

    def state_dict(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        if state:
            raise ValueError(f"{self.name} keeps no state but the checkpoint has {sorted(state)}")


class FedAvg(Strategy):
    """McMahan et al. 2017: move to the example-weighted mean of the local models.

    `server_momentum` > 0 gives FedAvgM (Hsu et al. 2019): the server accumulates a velocity of
    mean deltas, which damps the back-and-forth that label-skewed parties cause.
    """

    name = "fedavg"

    def __init__(self, server_learning_rate: float = 1.0, server_momentum: float = 0.0) -> None:
        if server_learning_rate <= 0 or not 0 <= server_momentum < 1:
            raise ValueError("server_learning_rate must be > 0 and server_momentum in [0, 1)")
        self.server_learning_rate = server_learning_rate
        self.server_momentum = server_momentum
        self.velocity: np.ndarray | None = None

    def apply(self, global_params: np.ndarray, mean_update: np.ndarray) -> np.ndarray:
        if self.server_momentum:
            self.velocity = mean_update.copy() if self.velocity is None else \
                self.server_momentum * self.velocity + mean_update
            return global_params + self.server_learning_rate * self.velocity
        return global_params + self.server_learning_rate * mean_update

    def state_dict(self) -> dict[str, np.ndarray]:
        return {} if self.velocity is None else {"velocity": self.velocity.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.velocity = state["velocity"].copy() if "velocity" in state else None


class FedProx(FedAvg):
    """Li et al. 2020: FedAvg aggregation; parties add (mu/2)·||w − w_global||² to their loss."""

    name = "fedprox"

    def __init__(self, proximal_mu: float = 0.01, server_learning_rate: float = 1.0,
                 server_momentum: float = 0.0) -> None:
        super().__init__(server_learning_rate, server_momentum)
        if proximal_mu <= 0:
            raise ValueError(f"FedProx needs proximal_mu > 0, got {proximal_mu}")
        self.proximal_mu = proximal_mu

    def fit_config(self, round_number: int) -> dict[str, Any]:
        return {"proximal_mu": self.proximal_mu}


class FedAdam(Strategy):
    """Reddi et al. 2021 (FedOpt): Adam on the server with the mean delta as pseudo-gradient."""

    name = "fedadam"

    def __init__(self, server_learning_rate: float = 0.01, beta1: float = 0.9, beta2: float = 0.99,
                 tau: float = 1e-3) -> None:
        self.eta, self.beta1, self.beta2, self.tau = server_learning_rate, beta1, beta2, tau
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None

    def apply(self, global_params: np.ndarray, mean_update: np.ndarray) -> np.ndarray:
        if self.m is None or self.v is None:
            self.m = np.zeros_like(global_params)
            self.v = np.full_like(global_params, self.tau**2)
        self.m = self.beta1 * self.m + (1 - self.beta1) * mean_update
        self.v = self.beta2 * self.v + (1 - self.beta2) * mean_update**2
        return global_params + self.eta * self.m / (np.sqrt(self.v) + self.tau)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {} if self.m is None or self.v is None else {"m": self.m.copy(), "v": self.v.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.m = state["m"].copy() if "m" in state else None
        self.v = state["v"].copy() if "v" in state else None


def make_strategy(name: str, **options: float) -> Strategy:
    """Build a strategy by name; unknown names and options fail loudly."""
    classes: dict[str, type[Strategy]] = {"fedavg": FedAvg, "fedprox": FedProx, "fedadam": FedAdam}
    if name not in classes:
        raise ValueError(f"unknown strategy {name!r}; expected one of {sorted(classes)}")
    try:
        return classes[name](**options)
    except TypeError as exc:
        raise ValueError(f"bad options for strategy {name!r}: {exc}") from None
