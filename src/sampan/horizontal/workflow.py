"""The coordinator's program for horizontal training (`HorizontalWorkflow`): setup, rounds, checkpoints, model.

This module holds the round loop and the run's lifecycle (start or resume, checkpoints, budget stop); the
stages it calls are mixins of one job each: `sampan.horizontal.setup_stage` (parties, schema, scaler, initial
model), `sampan.horizontal.secure_rounds` (SecAgg+ collection) and `sampan.horizontal.evaluation_stage`
(evaluation and the run's result). Every name importable from here before that split still is.

One round loop for every mode: the parties' `fit` replies are folded into an aggregation, which privacy
wraps (`sampan.privacy.wrappers`: SecAgg+ collection, central DP3 noise) instead of a second round method.
Progress events (``ctx.progress``): "run_started" {run_id, total_rounds, resumed_from}, "round_started"
{round, parties}, "party_done" {party}, "round" {round, seconds, parties, train_loss, global, party}.

The coordinator talks to parties only through a Transport and only ever holds the global model,
one running aggregate and per-party scalars. With `[secure_aggregation]` on it holds less: each round
runs the SecAgg+ steps (`sampan.privacy.secagg`) and the coordinator sees only the unmasked sum of
the parties' updates, weights and losses. A round is ONE SecAgg instance (5 exchanges, whatever the number
of parties): without DP, a round whose incoming model is due an evaluation (every `eval_every` rounds)
carries it in the same masked vector as the fit (`SecureRounds._secure_round_sum`), so round r reports
the evaluation of model r-1 (audit event "secagg_evaluation" with "carried_by_round"); the final model,
which no fit starts from, is evaluated by its own instance once per run (5 more). Under DP only that final
evaluation happens, at DP_BINS; parties that fail mid-round are dropouts the protocol
absorbs, and a round below the threshold is retried with the survivors under fresh keys (after an
abort at unmasking, with the same survivor set: parties that revealed shares answer for no other). An
unmasked sum is stored before anything else, so a crash before the round is saved resumes from it
instead of asking the parties for a second aggregation of the round. Every round ends with one atomic store write
(checkpoint + metrics + audit event); a run killed at any point resumes from its last round and,
because every random choice is derived from the run seed and the round number, finishes with exactly
the model an uninterrupted run would have produced (without DP: DP noise comes from the OS CSPRNG).
Under `[privacy]` every step's ledger events are charged write-ahead: recorded and persisted
(`RunRecorder.charge`, with their `budget_charged` audit entry) before its requests leave, and a
resumed run starts from that durable ledger, so a re-run after a crash is a fresh, charged release
and a crash loop ends in a budget stop (`sampan.horizontal.privacy_control`).

What each role learns (the catalogue `sampan.wire.catalogue` lists every field): parties learn the global
models they are sent; the coordinator learns, under
`[privacy]`, each party's training row count once through a charged Gaussian (all weights, DP-SGD
rates and steps use that released count), DP1 statistics, and updates that are outputs of DP2/DP3
(clipped un-noised updates only under central DP3, where it is the trusted role) — no training loss,
positive rate or clipping statistics; the model is evaluated once, at the last round, on holdout rows,
which are outside the DP unit. With secure aggregation, evaluation replies are summed under SecAgg+
like updates (inside the next round's fit vector, or, for the final model, on their own), so no per-party
histogram or metric reaches it, and a model's update and evaluation are unmasked over the same survivor
set only; each run then starts from a model drawn from its seed (`INIT_JITTER`, drawn in every run), since
a party unmasks one model for one survivor set only, in any run.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np

from sampan.config import RunConfig
from sampan.core.seeds import derive_rng, derive_seed
from sampan.core.workflow import RunContext, Workflow, WorkflowResult
from sampan.horizontal.aggregators import StrategyAggregation, make_aggregator
from sampan.horizontal.decision import class_weights
from sampan.horizontal.evaluation_stage import EvaluationStage
from sampan.horizontal.privacy_control import PrivacyControl
from sampan.horizontal.results import RunOutcome, TrafficMeter, histogram_metrics, result_info
from sampan.horizontal.run_state import RunState, build_strategy
from sampan.horizontal.secure_rounds import COORDINATOR, FederationError, SecureRounds  # FederationError: re-exported
from sampan.horizontal.setup_stage import INIT_JITTER, SetupStage
from sampan.metrics import ScoreHistogram
from sampan.privacy.ledger import BudgetExceeded
from sampan.privacy.wrappers import CentralDP3, UpdateAggregation
from sampan.wire import Message

__all__ = ["FAULT_ENV", "FederationError", "HorizontalWorkflow", "INIT_JITTER", "RunOutcome", "RunState",
           "build_strategy", "histogram_metrics", "result_info"]

FAULT_ENV = "SAMPAN_FAULT_KILL_AFTER_ROUND"  # test hook: SIGKILL this process after saving round N


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


class HorizontalWorkflow(SecureRounds, SetupStage, EvaluationStage, Workflow):
    """Horizontal training (logistic regression, MLP) over ``ctx.transport``; see the module docstring."""

    name = "horizontal"

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.strategy = build_strategy(config)
        s = config.strategy
        self.aggregator = make_aggregator(s.aggregator, trim_fraction=s.trim_fraction,
                                          byzantine=s.byzantine, multi=s.multi_krum)
        self.secagg = config.secure_aggregation if config.secure_aggregation and config.secure_aggregation.enabled \
            else None
        self._check_secagg_config()
        self._secagg_nonce = os.urandom(8).hex()  # fresh per coordinator process: labels never repeat on resume
        self._round_events: list[tuple[str, dict[str, Any]]] = []  # audit events saved with the round
        self._traffic = TrafficMeter()
        self._class_weight = class_weights(config, None) if isinstance(config.training.class_weight, dict) else None

    def total_rounds(self, config: Any) -> int:
        return int(config.run.rounds)

    def _train_config(self, round_number: int) -> dict[str, Any]:
        t = self.config.training
        return {"epochs": t.local_epochs, "batch_size": t.batch_size, "learning_rate": t.learning_rate,
                "optimizer": t.optimizer, "momentum": t.momentum, "l2": t.l2, "max_steps": t.local_steps,
                **self.strategy.fit_config(round_number),
                **({"class_weight": list(self._class_weight)} if self._class_weight else {})}

    def _party_rows(self, state: RunState) -> dict[str, int]:
        return {p: int(info["n_train"]) for p, info in state.parties.items()}

    def _bind(self, ctx: RunContext) -> None:
        self.ctx, self.transport, self.recorder = ctx, ctx.transport, ctx.recorder
        self.run_id, self.seed = ctx.run_id, ctx.seed
        self.privacy = PrivacyControl(self.config, self._train_config, on_charge=self._persist_charge)

    # --- messaging helpers ------------------------------------------------------------------------
    def _request(self, parties: list[str], kind: str, step: int, arrays: dict[str, np.ndarray] | None = None,
                 meta_for: Any = None) -> Iterator[Message]:
        messages = (
            Message(self.run_id, step, COORDINATOR, party, kind, arrays=arrays or {},
                    meta=meta_for(party) if meta_for else {})
            for party in parties
        )
        return self.transport.exchange(messages)

    # --- rounds -----------------------------------------------------------------------------------
    def _select(self, round_number: int, parties: list[str]) -> list[str]:
        fraction, minimum = self.config.run.fraction_fit, self.config.run.min_parties
        if len(parties) < minimum:
            raise FederationError(f"run needs at least {minimum} parties, has {len(parties)}")
        k = max(minimum, int(round(fraction * len(parties))))
        if k >= len(parties):
            return parties
        chosen = derive_rng(self.seed, "select", round_number).choice(len(parties), size=k, replace=False)
        return [parties[i] for i in sorted(chosen)]

    def _aggregation(self, round_number: int, parties: list[str], rows: dict[str, int]) -> UpdateAggregation:
        """The strategy's aggregation, wrapped by central/distributed DP3 when the run has it."""
        return self.privacy.aggregation(round_number, parties, rows) or StrategyAggregation(self.aggregator)

    def _fit_round(self, state: RunState, round_number: int) -> tuple[np.ndarray, list[str], float]:
        """One round: charge (write-ahead), collect the updates (in clear or under SecAgg), aggregate, apply."""
        selected = self._select(round_number, sorted(state.parties))
        self.ctx.progress("round_started", {"round": round_number, "parties": len(selected)})
        train_cfg = self._train_config(round_number)
        rows = self._party_rows(state)
        replay = self._stored_sum("secagg_round_sum", round_number) if self.secagg is not None else None
        if replay is None:  # (a replayed sum was unmasked, and charged, before a crash: nothing leaves again)
            # write-ahead: charged durably before any fit request leaves; raises BudgetExceeded instead if it
            # does not fit the durable ledger (so a crash loop ends in a budget stop, never in free releases)
            self.privacy.charge(self.privacy.planned_events(rows, selected, round_number))
        if self.secagg is not None:
            bins = self.privacy.evaluation_bins if self._carries_evaluation(round_number) else None
            total, carried = self._secure_round_sum(state, round_number, selected, train_cfg, replay, bins)
            if carried is not None:  # the evaluation of the model this round started from, same survivor set
                evaluated, histogram, loss_sum, brier_sum, n = carried
                self._round_events.append(("secagg_evaluation", {
                    "round": evaluated, "carried_by_round": round_number, "contributors": total.contributors,
                    "metrics": histogram_metrics(histogram, loss_sum, brier_sum, n)}))
            contributors = total.contributors
            aggregation = self._aggregation(round_number, contributors, rows)
            aggregation.add_sum(total)
            released = self.privacy.releases_training_loss and total.weight > 0  # under DP the loss slot is 0
            train_loss = float(total.weighted_loss / total.weight) if released else math.nan
        else:
            contributors = selected
            aggregation = self._aggregation(round_number, selected, rows)
            train_loss = self._collect_in_clear(state, round_number, selected, train_cfg, rows, aggregation)
        mean_update = aggregation.result()
        if isinstance(aggregation, CentralDP3):
            state.dp3_clip = aggregation.dp3.clip
        state.ledger_json = self.privacy.ledger_json()
        return self.strategy.apply(state.params, mean_update), contributors, train_loss

    def _carries_evaluation(self, round_number: int) -> bool:
        """Under SecAgg without DP, round r's fit vector carries the evaluation of model r-1 when that model is
        due one (every `eval_every` rounds): one SecAgg instance per round instead of two. The final model is
        evaluated by its own instance after the last round; under DP only that one evaluation happens."""
        previous = round_number - 1
        return (self.secagg is not None and self.privacy.evaluates_every_round and previous >= 1
                and previous % self.config.run.eval_every == 0)

    def _collect_in_clear(self, state: RunState, round_number: int, selected: list[str], train_cfg: dict[str, Any],
                          rows: dict[str, int], aggregation: UpdateAggregation) -> float:
        """Every selected party's `fit` reply, folded into ``aggregation`` as it arrives (one fan-out)."""
        dp_metas, _ = self.privacy.fit_meta(round_number, selected, self.privacy.released_rows(rows))
        loss_sum, n_sum = 0.0, 0
        replies = self._request(
            selected, "fit", round_number, arrays={"params": state.params, **state.scaler},
            meta_for=lambda p: {"model": state.model_config, "train": train_cfg, **dp_metas[p],
                                "seed": derive_seed(self.seed, "fit", round_number, p)})
        for reply in replies:
            # under DP a reply carries no row count and no loss: weights use the released counts
            n = int(reply.meta["n"]) if "n" in reply.meta else rows[reply.sender]
            aggregation.add(reply.arrays["update"], n, float(reply.meta.get("dp3_indicator", 0.0)))
            if "loss" in reply.meta:
                loss_sum += float(reply.meta["loss"]) * n
                n_sum += n
            self.ctx.progress("party_done", {"party": reply.sender})
        return loss_sum / n_sum if n_sum else math.nan

    def _persist_charge(self, ledger_json: str, events: Any) -> None:
        """The ledger and its `budget_charged` audit entry (one line per mechanism), in one transaction."""
        groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
        for e in events:
            groups[(e.level, e.mechanism, e.noise_multiplier, e.sampling_rate, e.count)].append(e.party)
        steps = sorted({e.step for e in events if e.step is not None})
        self.recorder.charge(ledger_json, {"round": steps[0] if len(steps) == 1 else steps, "charges": [
            {"level": level, "mechanism": mech, "noise_multiplier": z, "sampling_rate": q, "count": count,
             "parties": sorted(parties)} for (level, mech, z, q, count), parties in sorted(groups.items(), key=str)]})

    def _take_round_events(self, round_number: int) -> list[tuple[str, dict[str, Any]]]:
        """The round's audit events, traffic since the last round included (saved with the round)."""
        delta = self._traffic.delta(self.transport)
        if delta is not None:
            self._round_events.append(("traffic", {"round": round_number, **delta}))
        events, self._round_events = self._round_events, []
        return events

    # --- lifecycle --------------------------------------------------------------------------------
    def _start(self) -> RunState:
        """A fresh run's setup and round 0, or the state of the last saved round (ledger and noise included)."""
        checkpoint = self.recorder.last_checkpoint()
        if checkpoint is None:
            state = self._setup()
            chosen = self.privacy.finish_setup(self._party_rows(state), first_round=1)  # before round 0 is saved,
            state.noise, state.ledger_json = dict(self.privacy.noise), self.privacy.ledger_json()  # after DP1's charge
            state.dp3_clip = self.privacy.dp3_clip()
            if chosen is not None:
                self.recorder.event("noise_chosen", chosen)
            arrays, meta = state.to_checkpoint()
            self.recorder.checkpoint(0, arrays, meta, {}, 0.0, events=self._take_round_events(0))
            return state
        state = RunState.from_checkpoint(checkpoint.round, checkpoint.arrays, checkpoint.meta)
        self.strategy.load_state_dict(state.strategy_state)
        self.recorder.event("run_resumed", {"from_round": checkpoint.round})
        self.privacy.resume(self.recorder.ledger(), state.ledger_json, state.noise, state.dp3_clip)
        return state

    def run(self, ctx: RunContext) -> WorkflowResult:
        self._bind(ctx)
        total = self.config.run.rounds
        state = self._start()
        self._class_weight = class_weights(self.config, state.parties)  # from describe's pooled positive rate
        self.recorder.info("parties", state.parties)
        self.recorder.info("feature_names", state.feature_names)
        ctx.progress("run_started", {"run_id": self.run_id, "total_rounds": total, "resumed_from": state.round})
        fault_round = int(os.environ.get(FAULT_ENV, "0") or 0)
        histogram: ScoreHistogram | None = None
        global_metrics: dict[str, Any] = {}
        for round_number in range(state.round + 1, total + 1):
            ctx.check_cancelled()
            started = time.perf_counter()
            try:
                state.params, selected, train_loss = self._fit_round(state, round_number)
            except BudgetExceeded as exc:  # a clean stop: the model of the last affordable round stands
                state.budget_stop = str(exc)
                self.recorder.event("budget_stop", {"round": round_number, "reason": str(exc)})
                break
            state.strategy_state = self.strategy.state_dict()
            state.round = round_number
            party_metrics: dict[str, dict[str, Any]] = {}
            # under DP, evaluation runs once, at the end, on the released model (holdout rows are outside
            # the DP unit; the receipt says so): no per-round evaluation release, no training loss
            # under SecAgg a due evaluation rides on the next round's fit vector (`_carries_evaluation`)
            if round_number == total or (
                self.privacy.evaluates_every_round
                and self.secagg is None
                and round_number % self.config.run.eval_every == 0
            ):
                global_metrics, party_metrics, histogram = self.evaluate(state, round_number)
            seconds = time.perf_counter() - started
            shown = global_metrics if party_metrics else {}
            arrays, meta = state.to_checkpoint()
            self.recorder.checkpoint(
                round_number,
                arrays,
                meta,
                {"train_loss": _finite(train_loss), "parties": selected, "global": shown, "party": party_metrics},
                seconds,
                events=self._take_round_events(round_number),
            )
            ctx.progress(
                "round",
                {
                    "round": round_number,
                    "seconds": seconds,
                    "parties": selected,
                    "train_loss": train_loss,
                    "global": shown,
                    "party": party_metrics,
                },
            )
            if fault_round == round_number:
                os.kill(os.getpid(), signal.SIGKILL)
        if histogram is None:  # DP, resumed after the last round, or stopped by the budget: evaluate once more
            global_metrics, _, histogram = self.evaluate(state, state.round)
            for kind, detail in self._take_round_events(state.round):
                self.recorder.event(kind, detail)
        result = self._result(state, global_metrics, histogram)
        if self.config.bank_alone is not None:  # each bank alone vs the consortium, on its own holdout (issue 13)
            from sampan.horizontal.local_comparison import compare_banks
            result.info["bank_alone"] = compare_banks(self, state)
        groups = self.config.evaluation.groups if self.config.evaluation is not None else None
        if groups and result.info.get("decision"):  # fairness by group at the chosen threshold (issue 13 item 8)
            from sampan.horizontal.group_evaluation import evaluate_groups
            result.info["groups"] = evaluate_groups(self, state, float(result.info["decision"]["threshold"]))
        return result
