"""Horizontal GBDT as a workflow of the one runner (`model.kind = "gbdt"`): trees from summed histograms.

The coordinator agrees on bin edges, grows every tree level by level on the banks' summed gradient and
hessian histograms (`sampan.horizontal.gbdt.train_horizontal_gbdt`), records each tree as a round, then
evaluates the final model once on every bank's holdout through the banks' ordinary `evaluate` handler
(so the party's evaluation rules and cap apply) and returns it as arrays (bin edges) plus JSON (trees,
split bins, base score): never pickle.

What each role learns: as in `sampan.horizontal.gbdt` (the coordinator sees each bank's quantile sketch,
row and default counts and per-node histograms, in the clear; each bank learns the whole model), plus each
bank's holdout evaluation reply (`sampan.horizontal.party`, kind `evaluation`). No differential privacy and
no secure aggregation exist for horizontal GBDT: a config asking for either is refused, never run without.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sampan.core.workflow import ModelArtifact, RunContext, Workflow, WorkflowResult
from sampan.horizontal.gbdt import gbdt_model_payload, train_horizontal_gbdt
from sampan.horizontal.secure_rounds import COORDINATOR, FederationError
from sampan.horizontal.workflow import histogram_metrics, result_info
from sampan.metrics import ScoreHistogram
from sampan.wire import Message

__all__ = ["HorizontalGBDTWorkflow"]


class HorizontalGBDTWorkflow(Workflow):
    """Horizontal gradient-boosted trees across banks (see the module docstring)."""

    name = "horizontal"

    def __init__(self, config: Any) -> None:
        if getattr(config, "privacy", None) is not None:
            raise ValueError("model.kind = 'gbdt' runs without differential privacy (no DP mechanism exists for "
                             "horizontal trees): remove [privacy] or use model.kind = 'logistic' or 'mlp'")
        secagg = getattr(config, "secure_aggregation", None)
        if secagg is not None and getattr(secagg, "enabled", False):
            raise ValueError("model.kind = 'gbdt' sums histograms in the clear (no secure aggregation for trees): "
                             "disable [secure_aggregation] or use model.kind = 'logistic' or 'mlp'")
        self.config = config
        self.params = config.model.gbdt_params()

    def total_rounds(self, config: Any) -> int:
        return int(config.model.n_trees)

    def _feature_names(self, ctx: RunContext, parties: list[str]) -> list[str]:
        names: list[str] | None = None
        first = ""
        for reply in ctx.transport.exchange(Message(ctx.run_id, 0, COORDINATOR, p, "describe") for p in parties):
            theirs = list(reply.meta["feature_names"])
            if names is None:
                names, first = theirs, reply.sender
            elif theirs != names:
                raise FederationError(f"party {reply.sender!r} has features that differ from party {first!r}: "
                                      f"{sorted(set(theirs) ^ set(names)) or 'same names, different order'}")
        assert names is not None
        return names

    def run(self, ctx: RunContext) -> WorkflowResult:
        if ctx.recorder.last_checkpoint() is not None:  # the banks' running scores live in their memory only
            raise FederationError(f"run {ctx.run_id}: a horizontal GBDT run cannot resume (the banks keep their "
                                  "running scores in memory); start a new run")
        parties = sorted(ctx.transport.parties)
        names = self._feature_names(ctx, parties)
        ctx.recorder.info("feature_names", names)
        ctx.progress("run_started", {"run_id": ctx.run_id, "total_rounds": self.params.n_trees, "resumed_from": 0})

        def on_tree(record: dict[str, Any]) -> None:
            ctx.check_cancelled()
            metrics = {"global": {"val_logloss": record.get("val_logloss")}, "parties": parties}
            ctx.recorder.checkpoint(int(record["tree"]), {}, {}, metrics, 0.0)
            ctx.progress("round", {"round": int(record["tree"]), "seconds": 0.0, "parties": parties,
                                   "train_loss": None, "global": metrics["global"], "party": {}})

        result = train_horizontal_gbdt(ctx.transport, ctx.run_id, parties, self.params, names, progress=on_tree)
        arrays, model = gbdt_model_payload(result, names)
        metrics, per_party, histogram = self._evaluate(ctx, parties, arrays, model)
        meta = {"model": model, "metrics": metrics, "feature_names": names}
        info = {"final_metrics": metrics, "party_metrics": per_party, "trees": len(result.model.trees),
                **result_info(histogram)}
        return WorkflowResult(final_metrics=metrics, models=[ModelArtifact(self.config.run.name, arrays, meta)],
                              info=info)

    def _evaluate(self, ctx: RunContext, parties: list[str], arrays: dict[str, np.ndarray], model: dict[str, Any],
                  ) -> tuple[dict[str, Any], dict[str, Any], ScoreHistogram]:
        """The final model once on every bank's holdout, through the banks' `evaluate` handler."""
        histogram: ScoreHistogram | None = None
        n, loss_sum, brier_sum, per_party = 0, 0.0, 0.0, {}
        step = self.params.n_trees + 1
        for reply in ctx.transport.exchange(Message(ctx.run_id, step, COORDINATOR, p, "evaluate", arrays=arrays,
                                                    meta={"model": model}) for p in parties):
            part = ScoreHistogram.from_arrays(dict(reply.arrays))
            histogram = part if histogram is None else histogram + part
            n += int(reply.meta["n"])
            loss_sum += float(reply.meta["loss_sum"])
            brier_sum += float(reply.meta["brier_sum"])
            per_party[reply.sender] = dict(reply.meta.get("metrics") or {})
        assert histogram is not None
        return histogram_metrics(histogram, loss_sum, brier_sum, n), per_party, histogram
