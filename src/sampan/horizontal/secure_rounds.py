"""Secure-aggregation (SecAgg+) collection of the horizontal workflow: training and evaluation sums, retries, replay.

A mixin of `HorizontalWorkflow` (`sampan.horizontal.workflow`). Each attempt is driven by the SecAgg
wrapper (`sampan.privacy.wrappers.run_secagg_stages`); every stage goes to all of the attempt's parties
in ONE fan-out (`sampan.core.transport.exchange_settled`), so a secure sum costs 5 exchanges (advertise
keys, share keys, masked input, consistency, unmask) whatever the number of parties. Without DP a round
that evaluates carries the evaluation of the model it STARTS from in the same masked vector as its fit
([update, indicator, loss, weight | histogram, loss sum, Brier sum, n]): one SecAgg instance, 5 exchanges
per round; the final model (which no fit starts from) is evaluated by its own instance once per run. Under
DP only the final model is evaluated, once, at DP_BINS, by that one evaluation-only instance. A party that
errs or cannot be reached is a dropout the protocol absorbs; an attempt below the threshold is retried with
the survivors.

What each role learns: the coordinator learns only the unmasked sum over the round's contributors (and
who contributed or dropped out): the summed update and, on evaluated rounds, the summed evaluation of the
round's incoming model, both over the SAME survivor set (one vector, one unmasking: parties lock the model
digest of the fit and of the evaluation it carries, so neither part is unmasked for another set, in a
retry, a replayed request or a separate `evaluate` of that model); parties learn their neighbours' signed
public keys and the shares sealed to them (`sampan.privacy.secagg`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from sampan.core.seeds import derive_rng, derive_seed
from sampan.core.transport import DROPOUT_ERRORS, exchange_settled
from sampan.errors import ConfigError
from sampan.horizontal.secure_inputs import evaluation_from_vector
from sampan.metrics import ScoreHistogram
from sampan.privacy.fit_evaluation import EVAL_MAX_ABS, EVALUATION_FRAC_BITS, evaluation_scale
from sampan.privacy.secagg import SecAggAbort, SecAggParams, SecAggServer, choose_neighbours, decode_vector
from sampan.privacy.wrappers import SecAggCollection, StageCall, UpdateSum
from sampan.wire import Message

if TYPE_CHECKING:
    from sampan.config import RunConfig
    from sampan.config.privacy import SecureAggregationSection
    from sampan.core.transport import Transport
    from sampan.core.workflow import RunContext, RunRecorder
    from sampan.horizontal.privacy_control import PrivacyControl
    from sampan.horizontal.workflow import RunState

__all__ = ["COORDINATOR", "DROPOUT_ERRORS", "EVAL_FRAC_BITS", "EVAL_MAX_ABS", "FederationError", "SecureRounds"]

COORDINATOR = "coordinator"
# Evaluation sums (counts up to millions, score and loss sums) need a wider integer part than updates.
EVAL_FRAC_BITS = EVALUATION_FRAC_BITS
# An evaluation carried in a fit vector: (the round whose model it evaluated, histogram, loss sum, Brier sum, n).
CarriedEvaluation = tuple[int, ScoreHistogram, float, float, int]


class FederationError(ConfigError, RuntimeError):
    """The parties cannot train together (e.g. they disagree on the feature schema)."""


def _retry_set(server: SecAggServer | None, exc: SecAggAbort) -> list[str]:
    """Who a failed attempt is retried with: the survivors of the step it stopped at, except after unmask
    shares were revealed — those parties then answer only for the same survivor set U3 in this round."""
    if server is not None and exc.stage == "unmasking" and server.u3:
        return list(server.u3)
    return list(exc.survivors)


class SecureRounds:
    """The SecAgg+ methods of `HorizontalWorkflow`; they use its transport, recorder, config, privacy control,
    progress and round events."""

    if TYPE_CHECKING:  # what the host class (`HorizontalWorkflow`) sets; declared here for the type checker only
        config: RunConfig
        secagg: SecureAggregationSection | None
        ctx: RunContext
        transport: Transport
        recorder: RunRecorder
        run_id: str
        seed: int
        privacy: PrivacyControl
        _secagg_nonce: str
        _round_events: list[tuple[str, dict[str, Any]]]

        def _party_rows(self, state: RunState) -> dict[str, int]: ...

    def _check_secagg_config(self) -> None:
        """Secure aggregation hides the individual updates a robust aggregator needs: refuse the pair here too,
        for configs built without validation (the config validator refuses it first)."""
        if self.secagg is not None and self.config.strategy.aggregator != "mean":
            raise FederationError(f"strategy.aggregator = {self.config.strategy.aggregator!r} cannot run under "
                                  "secure_aggregation (it needs the individual updates, which SecAgg hides); "
                                  "set strategy.aggregator = 'mean' (client-side clipping bounds each update)")

    def _secagg_params(self, parties: int) -> SecAggParams:
        assert self.secagg is not None
        k = self.secagg.neighbours
        if k == "auto":
            degree = choose_neighbours(parties, self.secagg.threshold, self.secagg.expected_dropout)
        else:
            degree = None if k == "all" else int(k)
        return SecAggParams(threshold=self.secagg.threshold, neighbours=degree, frac_bits=self.secagg.frac_bits,
                            max_abs=self.secagg.max_abs, min_contributors=self.secagg.min_contributors)

    def _secagg_floor(self) -> int:
        """The least number of parties a secure round may sum (never below min_contributors >= 3)."""
        assert self.secagg is not None
        return max(self.secagg.min_contributors, self.config.run.min_parties)

    def _secagg_label(self, what: str, attempt: int) -> str:
        """`<run>/<what>/attempt-<a>/<nonce>`: the nonce is fresh per coordinator process, so a resumed run
        never repeats a label (a party masks at most once per label and would refuse the repeat)."""
        return f"{self.run_id}/{what}/attempt-{attempt}/{self._secagg_nonce}"

    def _secagg_failed(self, what: str, attempts: list[dict[str, Any]], left: int) -> FederationError:
        floor = self._secagg_floor()
        min_contributors = self.secagg.min_contributors if self.secagg else "?"
        tried = "; ".join(a["stage"] + ": " + a["reason"] for a in attempts) or "too few parties selected"
        refused = sorted((attempts[-1].get("failed") or {}).items())[:1] if attempts else []  # a party's own
        tried += "".join(f"; party {p!r}: {why}" for p, why in refused)  # reason (one model for one set, ...)
        return FederationError(
            f"{what}: secure aggregation failed {len(attempts)} time(s) ({tried}); {left} parties left, at least "
            f"{floor} needed (secure_aggregation.min_contributors = {min_contributors}"
            f", run.min_parties = {self.config.run.min_parties}); nothing was aggregated below that minimum"
        )

    def _stage(self, step: int, build: Any, failures: dict[str, str]) -> StageCall:
        """A SecAgg stage as one fan-out: ``build(kind, party, arrays, meta)`` makes each request's (kind,
        arrays, meta); a party that errs or cannot be reached is a dropout (missing from the replies)."""

        def stage(
            kind: str,
            requests: Mapping[str, tuple[dict[str, np.ndarray], dict[str, Any]]],
        ) -> dict[str, dict[str, np.ndarray] | None]:
            messages = []
            for party, (arrays, meta) in requests.items():
                sent_kind, sent_arrays, sent_meta = build(kind, party, arrays, meta)
                messages.append(
                    Message(
                        self.run_id, step, COORDINATOR, party, sent_kind, arrays=dict(sent_arrays), meta=dict(sent_meta)
                    )
                )
            replies: dict[str, dict[str, np.ndarray] | None] = {}
            for party, reply in exchange_settled(self.transport, messages).items():
                if isinstance(reply, BaseException):
                    failures[party] = f"{kind}: {type(reply).__name__}: {reply}"[:300]
                    replies[party] = None
                else:
                    replies[party] = dict(reply.arrays)
            return replies

        return stage

    def _secure_round_sum(
        self,
        state: RunState,
        round_number: int,
        selected: list[str],
        train_cfg: dict[str, Any],
        replay: dict[str, Any] | None,
        evaluate_bins: int | None = None,
    ) -> tuple[UpdateSum, CarriedEvaluation | None]:
        """A training round's unmasked sum under SecAgg+: retried with the survivors while enough are left.

        With `evaluate_bins` every party also evaluates the model it is sent (the one the round starts from)
        and masks [fit | evaluation] as ONE vector: both parts are unmasked for one survivor set, in 5 exchanges."""
        assert self.secagg is not None
        n_params = state.params.size
        length = n_params + 3 + (3 * evaluate_bins + 3 if evaluate_bins else 0)
        rows = self._party_rows(state)
        floor = self._secagg_floor()
        participants = list(selected)
        attempts: list[dict[str, Any]] = []
        if replay is not None:  # unmasked before a crash: apply it, never ask the parties again (see _store_sum)
            self._round_events.append(("secagg_round", {**replay["event"], "replayed": True}))
            vector = np.asarray(replay["sum"], dtype=np.float64)
            carried = evaluate_bins if "evaluated_round" in replay["event"] else None  # as it was unmasked
            frac_bits = int(replay["event"].get("frac_bits", self.secagg.frac_bits))
            return _split_sum(vector, n_params, list(replay["contributors"]), round_number, carried, frac_bits)
        for attempt in range(self.secagg.max_retries + 1 if len(participants) >= floor else 0):
            label = self._secagg_label(f"round-{round_number}", attempt)
            if attempt > 0:  # a retry is a fresh release by every participant: charged write-ahead again
                self.privacy.charge(self.privacy.planned_events(rows, participants, round_number))
            params = self._secagg_params(len(participants))
            dp_metas, dp3_settings = self.privacy.fit_meta(round_number, participants, self.privacy.released_rows(rows))
            total_rows = sum(rows[p] for p in participants)
            failures: dict[str, str] = {}
            server: SecAggServer | None = None

            def build(
                kind: str,
                party: str,
                arrays: Any,
                meta: Any,
                dp_metas: dict[str, Any] = dp_metas,
                total_rows: int = total_rows,
                dp3_settings: Any = dp3_settings,
            ) -> tuple[str, Any, Any]:
                # this attempt's values bound at definition (ruff B023); it is only called within the attempt
                if kind != "fit":
                    return kind, arrays, meta
                # the masked-input step carries the training request
                fit_meta = {
                    "model": state.model_config,
                    "train": train_cfg,
                    **dp_metas[party],
                    "seed": derive_seed(self.seed, "fit", round_number, party),
                    "secagg": {**meta, "total_rows": total_rows},
                }
                if evaluate_bins:  # and the evaluation of the model it is sent, in the same vector
                    fit_meta["evaluate"] = {"bins": evaluate_bins}
                if dp3_settings is not None:
                    fit_meta["dp3"] = {**dp3_settings, "noise_parties": int(meta["noise_parties"])}
                return kind, {"params": state.params, **state.scaler, **arrays}, fit_meta

            try:  # the graph depends on the round and the participants, not the attempt: parties lock a round's
                # unmasking to one (survivor set, graph), so a retry over the same survivors must draw the same graph
                server = SecAggServer(
                    params,
                    participants,
                    length,
                    label,
                    derive_rng(self.seed, "secagg-graph", round_number, *participants),
                    round_id=f"round-{round_number}",
                )
                total = SecAggCollection(server, "fit").collect(self._stage(round_number, build, failures))
            except SecAggAbort as exc:
                summary = {
                    **(server.summary() if server else {}),
                    "failed": {**(server.dropouts if server else {}), **failures},
                }
                attempts.append({"attempt": attempt, "stage": exc.stage, "reason": exc.reason, **summary})
                self.recorder.event("secagg_round_failed", {"round": round_number, **attempts[-1]})
                participants = _retry_set(server, exc)
                if len(participants) < floor:
                    break
                continue
            for party in server.u3:
                self.ctx.progress("party_done", {"party": party})
            vector = decode_vector(total, params)
            summary = server.summary()
            # SecAggServer.summary's "failed" is the {party: stage} dict of its dropouts
            summary["failed"] = {**cast(dict[str, str], summary["failed"]), **failures}
            event = {"round": round_number, "attempt": attempt, "contributors": server.u3, **summary}
            if evaluate_bins:
                event.update(evaluated_round=round_number - 1, frac_bits=params.frac_bits)
            self._store_sum("secagg_round_sum", round_number, vector, server.u3, event)
            self._round_events.append(("secagg_round", event))
            return _split_sum(vector, n_params, list(server.u3), round_number, evaluate_bins, params.frac_bits)
        raise self._secagg_failed(f"round {round_number}", attempts, len(participants))

    def _store_sum(
        self, key: str, step: int, vector: np.ndarray, contributors: list[str], event: dict[str, Any]
    ) -> None:
        """Persist an unmasked sum before anything else happens: parties lock a round to the survivor set
        they revealed unmask shares for, so a crash before the round is saved must not need a second attempt
        (with whoever is alive then); the resumed coordinator applies the stored sum instead."""
        self.recorder.info(
            key, {"round": step, "sum": [float(x) for x in vector], "contributors": list(contributors), "event": event}
        )

    def _stored_sum(self, key: str, step: int) -> dict[str, Any] | None:
        stored = self.recorder.stored_info().get(key)
        return stored if isinstance(stored, dict) and stored.get("round") == step else None

    def _evaluate_secure(
        self,
        state: RunState,
        step: int,
        arrays: dict[str, np.ndarray],
    ) -> tuple[ScoreHistogram, float, float, int, dict[str, dict[str, Any]]]:
        """Evaluation under SecAgg+: each party masks [histogram, loss sum, Brier sum, n]; only the sum is seen.

        Same protocol and dropout handling as a training round (a failed attempt is retried with the
        survivors); no per-party metrics exist in this mode."""
        assert self.secagg is not None
        bins = self.privacy.evaluation_bins  # parties bin into exactly DP_BINS under DP
        floor = self._secagg_floor()
        participants = sorted(state.parties)
        attempts: list[dict[str, Any]] = []
        stored = self._stored_sum("secagg_evaluation_sum", step)
        if stored is not None:  # unmasked before a crash (the same model): not asked again
            self._round_events.append(("secagg_evaluation", {**stored["event"], "replayed": True}))
            vector = np.asarray(stored["sum"], dtype=np.float64)
            histogram, loss_sum, brier_sum, n = evaluation_from_vector(vector, bins)
            return histogram, loss_sum, brier_sum, n, {}
        for attempt in range(self.secagg.max_retries + 1):
            params = replace(self._secagg_params(len(participants)), frac_bits=EVAL_FRAC_BITS, max_abs=EVAL_MAX_ABS)
            label = self._secagg_label(f"evaluate-{step}", attempt)
            failures: dict[str, str] = {}
            server: SecAggServer | None = None

            def build(kind: str, party: str, req: Any, meta: Any) -> tuple[str, Any, Any]:
                if kind != "evaluate":
                    return kind, req, meta
                # the masked-input step carries the evaluation request
                return kind, {**arrays, **req}, {"model": state.model_config, "bins": bins, "secagg": dict(meta)}

            try:
                server = SecAggServer(
                    params,
                    participants,
                    3 * bins + 3,
                    label,
                    derive_rng(self.seed, "secagg-evaluate-graph", step, *participants),
                    round_id=f"evaluate-{step}",
                )
                total = SecAggCollection(server, "evaluate").collect(self._stage(step, build, failures))
            except SecAggAbort as exc:
                failed = {**(server.dropouts if server else {}), **failures}
                attempts.append({"attempt": attempt, "stage": exc.stage, "reason": exc.reason, "failed": failed})
                self._round_events.append(("secagg_evaluation_failed", {"round": step, **attempts[-1]}))
                participants = _retry_set(server, exc)
                if len(participants) < floor:
                    break
                continue
            event = {
                "round": step,
                "attempt": attempt,
                "contributors": server.u3,
                "failed": {**server.dropouts, **failures},
            }
            vector = decode_vector(total, params)
            self._store_sum("secagg_evaluation_sum", step, vector, server.u3, event)
            self._round_events.append(("secagg_evaluation", event))
            histogram, loss_sum, brier_sum, n = evaluation_from_vector(vector, bins)
            return histogram, loss_sum, brier_sum, n, {}
        raise FederationError(
            f"evaluation of round {step}: secure aggregation failed {len(attempts)} time(s) "
            f"({'; '.join(a['stage'] + ': ' + a['reason'] for a in attempts)}); "
            f"{len(participants)} parties left, at least {floor} needed"
        )


def _update_sum(vector: np.ndarray, n_params: int, contributors: list[str]) -> UpdateSum:
    """A round's unmasked sum [update, indicator, weighted loss, weight] as an `UpdateSum`."""
    return UpdateSum(vector[:n_params], float(vector[n_params]), float(vector[-2]), float(vector[-1]), contributors)


def _split_sum(
    vector: np.ndarray,
    n_params: int,
    contributors: list[str],
    round_number: int,
    evaluate_bins: int | None,
    frac_bits: int,
) -> tuple[UpdateSum, CarriedEvaluation | None]:
    """A round's sum split into its fit part and, when it carried one, the evaluation of its incoming model."""
    fit = _update_sum(vector[: n_params + 3], n_params, contributors)
    if not evaluate_bins:
        return fit, None
    carried = vector[n_params + 3 :] / evaluation_scale(frac_bits)
    histogram, loss_sum, brier_sum, n = evaluation_from_vector(carried, evaluate_bins)
    return fit, (round_number - 1, histogram, loss_sum, brier_sum, n)
