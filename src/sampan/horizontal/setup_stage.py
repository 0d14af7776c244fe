"""The setup stage of horizontal training (a mixin of `HorizontalWorkflow`): the parties, their schema, the
standardisation statistics and the initial model, once per run before round 1.

Apart from the round loop (`sampan.horizontal.workflow`) because it runs once and asks different questions:
`describe` (row counts, feature names), the imputation agreement (`sampan.horizontal.imputation`) and `stats`
(count, sums and sums of squares for the scaler); its result is round 0's `RunState`.

What each role learns (the catalogue `sampan.wire.catalogue` lists every field): the coordinator learns each
party's feature names, holdout row count and training row count (under `[privacy]` the training count once
through a charged Gaussian, DP1, and no positive rate) and the summed standardisation statistics (under DP1
through one charged Gaussian mechanism); parties learn nothing from each other here. Every charge is
write-ahead (`PrivacyControl`), so a setup re-run after a crash starts from the durable ledger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sampan.core.seeds import derive_rng
from sampan.horizontal.dp1_scaler import combine_dp1_stats, dp1_warning, emit_warning
from sampan.horizontal.imputation import federated_fill_values
from sampan.horizontal.run_state import RunState
from sampan.horizontal.secure_rounds import FederationError
from sampan.models import model_from_config

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sampan.config import RunConfig
    from sampan.config.privacy import SecureAggregationSection
    from sampan.core.transport import Transport
    from sampan.core.workflow import RunContext, RunRecorder
    from sampan.horizontal.privacy_control import PrivacyControl
    from sampan.wire import Message

__all__ = ["INIT_JITTER", "SetupStage"]

# The initial model is the model-family start plus N(0, INIT_JITTER^2) per parameter, drawn from the run seed:
# under secure aggregation parties unmask one model for one survivor set only, in any run (review R11), so two
# runs (another party set) must not start from the same model (logistic regression's start is all zeros).
INIT_JITTER = 1e-3


class SetupStage:
    """The setup method of `HorizontalWorkflow`; it uses its transport, recorder, config, seed and privacy control."""

    if TYPE_CHECKING:  # what the host class (`HorizontalWorkflow`) sets; declared here for the type checker only
        config: RunConfig
        secagg: SecureAggregationSection | None
        ctx: RunContext
        transport: Transport
        recorder: RunRecorder
        seed: int
        privacy: PrivacyControl

        def _request(self, parties: list[str], kind: str, step: int, arrays: dict[str, np.ndarray] | None = None,
                     meta_for: Any = None) -> Iterator[Message]: ...

    def _setup(self) -> RunState:
        parties = sorted(self.transport.parties)
        info: dict[str, dict[str, Any]] = {}
        names: list[str] | None = None
        first = None
        # under [privacy] the row counts are released through a charged mechanism (DP1); a setup re-run after a
        self.privacy.open(parties, self.recorder.ledger())  # crash starts from the durable ledger: still charged
        count = self.privacy.count_request(parties)  # None without [privacy]
        for reply in self._request(parties, "describe", 0, meta_for=lambda p: {"dp_count": count} if count else {}):
            info[reply.sender] = {k: reply.meta.get(k) for k in ("n_train", "n_test", "positive_rate")}
            if names is None:
                names, first = list(reply.meta["feature_names"]), reply.sender
            elif list(reply.meta["feature_names"]) != names:
                theirs = list(reply.meta["feature_names"])
                diff = sorted(set(theirs) ^ set(names)) or "same names, different order"
                raise FederationError(
                    f"party {reply.sender!r} has features that differ from party {first!r}: {diff}")
        assert names is not None
        self.recorder.event("parties_joined", {
            "parties": {p: {"n_train": info[p]["n_train"], "n_test": info[p]["n_test"]} for p in sorted(info)},
            "features": len(names), "secure_aggregation": self.secagg is not None})
        fill = federated_fill_values(self, parties, len(names))  # missing values: None when nothing is imputed
        scaler: dict[str, np.ndarray] = {} if fill is None else {"impute": fill}  # travels with every request
        if self.config.data.standardize:
            rows = {p: int(info[p]["n_train"]) for p in parties}
            dp1 = self.privacy.dp1_request(names, parties, rows)  # None without DP1
            total, sum_, sum_sq = 0.0, np.zeros(len(names)), np.zeros(len(names))
            for reply in self._request(parties, "stats", 0, arrays=dict(scaler),
                                       meta_for=lambda p: {"dp1": dp1} if dp1 else {}):
                total += float(reply.meta["n"])
                sum_ += reply.arrays["sum"]
                sum_sq += reply.arrays["sum_sq"]
            if dp1 is not None:
                scaler.update(combine_dp1_stats(total, sum_, sum_sq, dp1["bounds"]))
                emit_warning(self.ctx, dp1_warning(dp1["noise_multiplier"], scaler, dp1["bounds"], names, rows))
            else:
                mean = sum_ / total
                scale = np.sqrt(np.maximum(sum_sq / total - mean**2, 0.0))
                scaler.update({"mean": mean, "scale": np.where(scale > 1e-12, scale, 1.0)})
        m = self.config.model
        model_config: dict[str, Any] = {"kind": m.kind, "n_features": len(names)}
        if m.kind == "mlp":
            model_config["hidden"] = list(m.hidden)
        model = model_from_config(model_config)
        params = model.init_params(derive_rng(self.seed, "init"))
        # under SecAgg parties unmask one model for one survivor set only, in any run (review R11): a start drawn
        # from the seed (tiny: logistic regression would start at zeros) keeps runs apart. Drawn with or without
        # SecAgg, so that a secure run trains exactly the model a plain run with the same seed trains.
        params = params + derive_rng(self.seed, "init", "jitter").normal(0.0, INIT_JITTER, params.size)
        return RunState(0, params, scaler, {}, info, model_config, names)
