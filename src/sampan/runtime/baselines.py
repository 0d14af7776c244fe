"""Pooled-data baselines: the yardstick federation is measured against in simulations.

Pooling is exactly what Sampan exists to avoid; these functions run only where every party's data
is already in one process (simulation, benchmarks, the demo) and say so in their names.
"""

from __future__ import annotations

import numpy as np

from sampan.config import RunConfig
from sampan.models.local_training import TrainConfig, train
from sampan.metrics import binary_metrics
from sampan.models import LogisticRegression, MLP, Model
from sampan.runtime.federation import PartySplit, load_splits, pooled
from sampan.runtime.seeds import derive_rng


def _model(config: RunConfig, n_features: int) -> Model:
    if config.model.kind == "mlp":
        return MLP(n_features, tuple(config.model.hidden))
    return LogisticRegression(n_features)


def train_pooled(config: RunConfig, splits: dict[str, PartySplit], seed: int) -> tuple[Model, np.ndarray, np.ndarray, np.ndarray]:
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
    splits = load_splits(config, seed)
    results: dict[str, dict[str, float]] = {}
    for name, split in splits.items():
        model, params, mean, scale = train_pooled(config, {name: split}, seed)
        y = split.test.y
        if y is None or not 0 < y.sum() < len(y):
            continue  # a one-class test split has no AUC
        results[name] = binary_metrics(y, model.predict_proba(params, (split.test.X - mean) / scale))
    return results


def pooled_baseline(config: RunConfig, seed: int) -> dict[str, float]:
    """Test metrics of the pooled model on every party's holdout rows."""
    splits = load_splits(config, seed)
    model, params, mean, scale = train_pooled(config, splits, seed)
    X_test, y_test = pooled(splits, "test")
    return binary_metrics(y_test, model.predict_proba(params, (X_test - mean) / scale))
