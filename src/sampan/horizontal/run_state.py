"""What a horizontal run starts and resumes from: its checkpointed state (`RunState`) and the aggregation
strategy built from the run config (`build_strategy`). The round loop is in `sampan.horizontal.workflow`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.config import RunConfig
from sampan.horizontal.strategies import Strategy, make_strategy

__all__ = ["RunState", "build_strategy"]


@dataclass
class RunState:
    round: int
    params: np.ndarray
    scaler: dict[str, np.ndarray]
    strategy_state: dict[str, np.ndarray]
    parties: dict[str, dict[str, Any]]
    model_config: dict[str, Any]
    feature_names: list[str]
    ledger_json: str | None = None
    budget_stop: str | None = None
    dp3_clip: float | None = None
    noise: dict[str, float] = field(default_factory=dict)  # chosen noise multipliers per level

    def to_checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {"params": self.params, **{f"scaler.{k}": v for k, v in self.scaler.items()},
                  **{f"strategy.{k}": v for k, v in self.strategy_state.items()}}
        meta = {"parties": self.parties, "model": self.model_config, "feature_names": self.feature_names,
                "ledger": self.ledger_json, "budget_stop": self.budget_stop, "dp3_clip": self.dp3_clip,
                "noise": self.noise}
        return arrays, meta

    @classmethod
    def from_checkpoint(cls, round_number: int, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> RunState:
        def prefixed(prefix: str) -> dict[str, np.ndarray]:
            return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}
        return cls(round=round_number, params=arrays["params"], scaler=prefixed("scaler."),
                   strategy_state=prefixed("strategy."), parties=meta["parties"], model_config=meta["model"],
                   feature_names=list(meta["feature_names"]), ledger_json=meta.get("ledger"),
                   budget_stop=meta.get("budget_stop"), dp3_clip=meta.get("dp3_clip"),
                   noise=dict(meta.get("noise") or {}))


def build_strategy(config: RunConfig) -> Strategy:
    options: dict[str, float] = {}
    if config.strategy.server_learning_rate is not None:
        options["server_learning_rate"] = config.strategy.server_learning_rate
    if config.strategy.name == "fedprox":
        options["proximal_mu"] = config.strategy.proximal_mu
    if config.strategy.server_momentum:
        if config.strategy.name == "fedadam":
            raise ValueError("strategy.server_momentum applies to fedavg/fedprox; FedAdam has its own moments")
        options["server_momentum"] = config.strategy.server_momentum
    return make_strategy(config.strategy.name, **options)
