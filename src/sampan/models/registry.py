"""Rebuild a model from its JSON config (models are stored as arrays + JSON, never pickled)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sampan.models.base import Model
from sampan.models.logistic import LogisticRegression
from sampan.models.mlp import MLP


def model_from_config(config: Mapping[str, Any]) -> Model:
    kind = config.get("kind")
    if kind == "logistic":
        return LogisticRegression(int(config["n_features"]))
    if kind == "mlp":
        return MLP(int(config["n_features"]), tuple(config.get("hidden", (32,))))
    raise ValueError(f"unknown model kind {kind!r}; expected 'logistic' or 'mlp'")
