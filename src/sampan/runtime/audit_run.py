"""`sampan audit RUN_ID`: membership inference against a finished run's registered model.

Members are the rows the run trained on (every party's training split); non-members are the
parties' holdout rows. LiRA's shadow models reproduce the run's *training procedure* on random halves
of that pool, trained on pooled rows with the run's model, hyperparameters, epoch budget and DP-SGD
noise (a proxy: the federated protocol itself is not replayed per shadow, which makes shadows
slightly stronger learners than the target, i.e. the attack pessimistic). The auditor needs every
party's rows in one place, so this runs only for simulated federations (`[source]` runs); for real
consortia each bank audits its own rows (not yet provided).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sampan.audit import audit_membership, true_label_confidence
from sampan.config import RunConfig, parse_config
from sampan.errors import ConfigError
from sampan.models import Model, model_from_config
from sampan.models.local_training import TrainConfig, train
from sampan.privacy.dpsgd import DPSGDConfig, dp_sgd_train
from sampan.runtime.baselines import pooled, simulated_splits
from sampan.runtime.seeds import derive_rng
from sampan.runtime.store import Store, StoreError


class AuditError(ConfigError, RuntimeError):
    """The run cannot be audited here (and why)."""


def _shadow_trainer(config: RunConfig, model: Model, noise: dict[str, float], n_parties: int) -> Callable:
    t = config.training
    steps = config.run.rounds * n_parties * t.local_steps if t.local_steps else None
    cfg = TrainConfig(epochs=config.run.rounds * t.local_epochs, batch_size=t.batch_size, max_steps=steps,
                      learning_rate=t.learning_rate, optimizer=t.optimizer, momentum=t.momentum, l2=t.l2)
    dp2 = config.privacy.dp2 if config.privacy else None

    def train_fn(X: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
        start = model.init_params(np.random.default_rng(seed))
        if dp2 is not None:
            dp = DPSGDConfig(noise["DP2"], dp2.max_grad_norm, dp2.sampling_rate)
            return dp_sgd_train(model, start, X, y, cfg, dp, sampling_rng=np.random.default_rng(seed + 1),
                                noise_rng=np.random.default_rng(seed + 2)).result.params
        return train(model, start, X, y, cfg, np.random.default_rng(seed + 1)).params

    return train_fn


def audit_run(store: Store, run_id: str, *, n_shadow: int = 8, seed: int = 0) -> dict[str, Any]:
    run = store.get_run(run_id)
    if run.status != "completed":
        raise AuditError(f"run {run_id!r} is {run.status}; audit a completed run")
    config = parse_config(run.config, source=f"stored config of run {run_id}")
    if config.source is None:
        raise AuditError("membership audits need every party's rows in one place: only simulated runs "
                         "([source]) can be audited by `sampan audit`")
    models = list(store.models_for_run(run_id))
    if not models:
        raise StoreError(f"run {run_id!r} registered no model")
    registered = models[-1]
    model = model_from_config(registered.meta["model"])
    mean, scale = registered.arrays.get("scaler.mean"), registered.arrays.get("scaler.scale")
    splits = simulated_splits(config, int(run.seed))
    X_train, y_train = pooled(splits, "train")
    X_test, y_test = pooled(splits, "test")
    X = np.vstack([X_train, X_test])
    if mean is not None and scale is not None:
        X = (X - mean) / scale
    y = np.concatenate([y_train, y_test])
    members = np.zeros(len(y), dtype=bool)
    members[: len(y_train)] = True
    checkpoint = store.latest_checkpoint(run_id)
    noise = dict((checkpoint.meta.get("noise") if checkpoint else None) or {})
    privacy = (run.info or {}).get("privacy") or {}
    claimed = max((p["epsilon_spent"] for p in (privacy.get("parties") or {}).values()), default=None)
    delta = config.privacy.delta if config.privacy else 1e-5

    def score_fn(params: np.ndarray, X_: np.ndarray, y_: np.ndarray) -> np.ndarray:
        return true_label_confidence(model.predict_proba(params, X_), y_)

    report = audit_membership(_shadow_trainer(config, model, noise, len(splits)), score_fn, X, y,
                              target_model=registered.arrays["params"], target_member_mask=members,
                              n_shadow=n_shadow, seed=int(derive_rng(seed, "audit", run_id).integers(2**31)),
                              delta=delta, claimed_epsilon=claimed)
    report["target"] = {"run_id": run_id, "model": registered.name, "version": registered.version,
                        "members": int(members.sum()), "non_members": int((~members).sum()),
                        "claimed_epsilon": claimed, "delta": delta}
    store.record_info(run_id, "membership_audit", report)
    return report
