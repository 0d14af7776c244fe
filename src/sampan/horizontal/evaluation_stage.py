"""The evaluation and result stages of horizontal training (a mixin of `HorizontalWorkflow`): global metrics of
a model from the parties' merged score histograms, and the run's result (model artifact, metrics, decision).

Apart from the round loop (`sampan.horizontal.workflow`), which decides WHEN a model is evaluated (every
`eval_every` rounds without DP, once at the end under `[privacy]`); this module says HOW: in clear, or summed
under SecAgg+ (`SecureRounds._evaluate_secure`), and what the run releases at its end.

What each role learns: parties learn the model they evaluate; the coordinator learns, in clear, each party's
per-bin label counts of holdout scores, loss and Brier sums and local metrics (under `[privacy]`: 100 bins and
no local metrics, once per run on the released model; holdout rows are outside the DP unit), or with secure
aggregation only their sum over the survivors (no per-party metrics). The result holds only the global model,
the scaler, the merged histogram's metrics and the privacy ledger summary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sampan.core.workflow import ModelArtifact, WorkflowResult
from sampan.horizontal.decision import decision_info, decision_meta
from sampan.horizontal.results import RunOutcome, histogram_metrics, result_info
from sampan.horizontal.run_state import RunState
from sampan.metrics import ScoreHistogram
from sampan.models import model_from_config

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np

    from sampan.config import RunConfig
    from sampan.config.privacy import SecureAggregationSection
    from sampan.horizontal.privacy_control import PrivacyControl
    from sampan.wire import Message

__all__ = ["EvaluationStage"]


class EvaluationStage:
    """The evaluation and result methods of `HorizontalWorkflow`; they use its transport (through `_request`),
    config, privacy control and, under secure aggregation, `SecureRounds._evaluate_secure`."""

    if TYPE_CHECKING:  # what the host class (`HorizontalWorkflow`) sets; declared here for the type checker only
        config: RunConfig
        secagg: SecureAggregationSection | None
        run_id: str
        privacy: PrivacyControl

        def _request(self, parties: list[str], kind: str, step: int, arrays: dict[str, np.ndarray] | None = None,
                     meta_for: Any = None) -> Iterator[Message]: ...

        def _evaluate_secure(self, state: RunState, step: int, arrays: dict[str, np.ndarray],
                             ) -> tuple[ScoreHistogram, float, float, int, dict[str, dict[str, Any]]]: ...

    def _evaluate_in_clear(self, state: RunState, step: int, arrays: dict[str, np.ndarray],
                           ) -> tuple[ScoreHistogram, float, float, int, dict[str, dict[str, Any]]]:
        """Each party's histogram, sums and local metrics, as it sends them (no secure aggregation)."""
        histogram: ScoreHistogram | None = None
        n, loss_sum, brier_sum = 0, 0.0, 0.0
        per_party: dict[str, dict[str, Any]] = {}
        for reply in self._request(sorted(state.parties), "evaluate", step, arrays=arrays,
                                   meta_for=lambda p: {"model": state.model_config}):
            part = ScoreHistogram.from_arrays(dict(reply.arrays))
            histogram = part if histogram is None else histogram + part
            n += int(reply.meta["n"])
            loss_sum += float(reply.meta["loss_sum"])
            brier_sum += float(reply.meta["brier_sum"])
            per_party[reply.sender] = dict(reply.meta["metrics"])
        assert histogram is not None
        return histogram, loss_sum, brier_sum, n, per_party

    def evaluate(self, state: RunState, step: int
                 ) -> tuple[dict[str, float], dict[str, dict[str, Any]], ScoreHistogram]:
        """Global metrics from merged score histograms; per-party metrics as each party reports them.

        With secure aggregation the histograms and sums are summed under SecAgg+ (no per-party
        metrics). Under `[privacy]` this runs once, on the released model (see `run`)."""
        arrays = {"params": state.params, **state.scaler}
        if self.secagg is not None:
            histogram, loss_sum, brier_sum, n, per_party = self._evaluate_secure(state, step, arrays)
        else:
            histogram, loss_sum, brier_sum, n, per_party = self._evaluate_in_clear(state, step, arrays)
        return histogram_metrics(histogram, loss_sum, brier_sum, n), per_party, histogram

    def _result(self, state: RunState, global_metrics: dict[str, Any], histogram: ScoreHistogram) -> WorkflowResult:
        model = model_from_config(state.model_config)
        privacy = self.privacy.summary()
        outcome = RunOutcome(
            self.run_id,
            state.round,
            global_metrics,
            state.params,
            state.scaler,
            model,
            histogram,
            privacy,
            state.budget_stop,
        )
        arrays = {"params": state.params, **{f"scaler.{k}": v for k, v in state.scaler.items()}}
        info = {
            "final_metrics": global_metrics,
            "privacy": privacy,
            "budget_stop": state.budget_stop,
            **result_info(histogram),
            **decision_info(self.config, histogram),
        }
        meta = {"model": model.config(), "metrics": global_metrics, "feature_names": list(state.feature_names),
                **decision_meta(info)}
        return WorkflowResult(
            final_metrics=global_metrics,
            models=[ModelArtifact(self.config.run.name, arrays, meta)],
            info=info,
            budget_stop=state.budget_stop,
            outcome=outcome,
        )
