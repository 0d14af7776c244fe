"""Pooled-data baselines: the yardstick horizontal federation is measured against in simulations.

Pooling is exactly what Sampan exists to avoid; these functions run only where every party's data
is already in one process (simulation, benchmarks, the demo) and say so in their names. Parties'
rows come from the horizontal capability's own simulation (looked up by name, so the runtime does
not import the horizontal package): each party's ``(train, test)`` split, as its run sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sampan.config import RunConfig
from sampan.data import PartyData
from sampan.metrics import binary_metrics
from sampan.models import MLP, LogisticRegression, Model
from sampan.models.local_training import TrainConfig, train
from sampan.runtime.capabilities import get_capability
from sampan.runtime.seeds import derive_rng

__all__ = ["local_only_baselines", "pooled", "pooled_baseline", "simulated_splits", "train_pooled"]


def _model(config: RunConfig, n_features: int) -> Model:
    if config.model.kind == "mlp":
        return MLP(n_features, tuple(config.model.hidden))
    return LogisticRegression(n_features)


def _parts(split: Any) -> tuple[PartyData, PartyData]:
    """A party's (train, test): a tuple, or anything with ``train`` and ``test`` (a PartySplit)."""
    return split if isinstance(split, tuple) else (split.train, split.test)


def simulated_splits(config: RunConfig, seed: int) -> dict[str, tuple[PartyData, PartyData]]:
    """Every party's (train, test) exactly as the run's simulated parties hold them."""
    setups = get_capability("horizontal").simulate(config, seed)
    return {name: _parts(setup.data) for name, setup in setups.items()}


def pooled(splits: Mapping[str, Any], part: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Every party's ``part`` rows ("train" or "test") in one array: simulation only, never in a deployment."""
    index = {"train": 0, "test": 1}[part]
    tables = [_parts(s)[index] for s in splits.values()]
    return np.vstack([t.X for t in tables]), np.concatenate([t.y for t in tables])


def train_pooled(
    config: RunConfig, splits: Mapping[str, Any], seed: int
) -> tuple[Model, np.ndarray, np.ndarray, np.ndarray]:
    """Train the run's model on all parties' training rows with the same training budget.

    With `local_epochs`, the budget is rounds x local epochs passes over the pooled rows; with
    `local_steps`, it is the same total number of minibatches the parties ran (rounds x parties x K).
    """
    X, y = pooled(splits, "train")
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    model = _model(config, X.shape[1])
    t = config.training
    max_steps = config.run.rounds * len(splits) * t.local_steps if t.local_steps else None
    cfg = TrainConfig(epochs=config.run.rounds * t.local_epochs, batch_size=t.batch_size, max_steps=max_steps,
                      learning_rate=t.learning_rate, optimizer=t.optimizer, momentum=t.momentum, l2=t.l2)
    params = train(model, model.init_params(derive_rng(seed, "init")), (X - mean) / scale, y, cfg,
                   derive_rng(seed, "pooled")).params
    return model, params, mean, scale


def local_only_baselines(config: RunConfig, seed: int) -> dict[str, dict[str, float]]:
    """Each party's own model (its rows only, same training budget), scored on its own test rows.

    This is what a bank gets without the consortium; the federated model's per-party metrics are
    compared against it.
    """
    results: dict[str, dict[str, float]] = {}
    for name, (train_rows, test_rows) in simulated_splits(config, seed).items():
        model, params, mean, scale = train_pooled(config, {name: (train_rows, test_rows)}, seed)
        y = test_rows.y
        if y is None or not 0 < y.sum() < len(y):
            continue  # a one-class test split has no AUC
        results[name] = binary_metrics(y, model.predict_proba(params, (test_rows.X - mean) / scale))
    return results


def pooled_baseline(config: RunConfig, seed: int) -> dict[str, float]:
    """Test metrics of the pooled model on every party's holdout rows."""
    splits = simulated_splits(config, seed)
    model, params, mean, scale = train_pooled(config, splits, seed)
    X_test, y_test = pooled(splits, "test")
    return binary_metrics(y_test, model.predict_proba(params, (X_test - mean) / scale))
