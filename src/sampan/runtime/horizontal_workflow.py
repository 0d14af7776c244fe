"""The coordinator's program for horizontal training: setup, rounds, checkpoints, final model.

The coordinator talks to parties only through a Transport and only ever holds the global model,
one running aggregate and per-party scalars. With `[secure_aggregation]` on it holds less: each round
runs the SecAgg+ steps (`sampan.privacy.secagg`) and the coordinator sees only the unmasked sum of
the parties' updates, weights and losses; parties that fail mid-round are dropouts the protocol
absorbs, and a round below the threshold is retried with the survivors under fresh keys (after an
abort at unmasking, with the same survivor set: parties that revealed shares answer for no other). An
unmasked sum is stored before anything else, so a crash before the round is saved resumes from it
instead of asking the parties for a second aggregation of the round. Every round ends with one atomic store write
(checkpoint + metrics + audit event); a run killed at any point resumes from its last round and,
because every random choice is derived from the run seed and the round number, finishes with exactly
the model an uninterrupted run would have produced (without DP: DP noise comes from the OS CSPRNG).
Under `[privacy]` every step's ledger events are charged write-ahead: recorded and persisted
(`Store.charge_ledger`, with their `budget_charged` audit entry) before its requests leave, and a
resumed run starts from that durable ledger, so a re-run after a crash is a fresh, charged release
and a crash loop ends in a budget stop (`sampan.runtime.privacy_control`).

What the coordinator learns (the catalogue `sampan.wire.catalogue` lists every field): under
`[privacy]`, each party's training row count once through a charged Gaussian (all weights, DP-SGD
rates and steps use that released count), DP1 statistics, and updates that are outputs of DP2/DP3
(clipped un-noised updates only under central DP3, where it is the trusted role) — no training loss,
positive rate or clipping statistics; the model is evaluated once, at the last round, on holdout rows,
which are outside the DP unit. With secure aggregation, evaluation replies are summed under SecAgg+
like updates, so no per-party histogram or metric reaches it; each run then starts from a model drawn
from its seed (`INIT_JITTER`, drawn in every run), since a party unmasks one model for one survivor set
only, in any run.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

import numpy as np

from sampan.config import RunConfig
from sampan.horizontal.aggregators import make_aggregator
from sampan.horizontal.strategies import Strategy, make_strategy
from sampan.horizontal.party import evaluation_from_vector
from sampan.metrics import ScoreHistogram
from sampan.metrics.histogram import DEFAULT_BINS, DP_BINS
from sampan.models import Model, model_from_config
from sampan.privacy.ledger import BudgetExceeded, PrivacyEvent
from sampan.privacy.secagg import SecAggAbort, SecAggParams, SecAggServer, choose_neighbours, decode_vector, run_secagg
from sampan.runtime.privacy_control import PrivacyControl, combine_dp1_stats
from sampan.runtime.progress import NullProgress, ProgressHook, RoundResult
from sampan.runtime.seeds import derive_rng, derive_seed
from sampan.runtime.store import Store
from sampan.transport import PartyError, Transport
from sampan.wire import Message

COORDINATOR = "coordinator"
FAULT_ENV = "SAMPAN_FAULT_KILL_AFTER_ROUND"  # test hook: SIGKILL this process after saving round N
# What a dead or unreachable party looks like to a workflow: an error reply, or the transport giving up.
# Evaluation sums (counts up to millions, score and loss sums) need a wider integer part than updates.
EVAL_FRAC_BITS, EVAL_MAX_ABS = 12, 2.0**36
# The initial model is the model-family start plus N(0, INIT_JITTER^2) per parameter, drawn from the run seed:
# under secure aggregation parties unmask one model for one survivor set only, in any run (review R11), so two
# runs (another party set) must not start from the same model (logistic regression's start is all zeros).
INIT_JITTER = 1e-3
DROPOUT_ERRORS: tuple[type[BaseException], ...] = (PartyError, TimeoutError, ConnectionError)


class FederationError(RuntimeError):
    """The parties cannot train together (e.g. they disagree on the feature schema)."""


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
    def from_checkpoint(cls, round_number: int, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> "RunState":
        def prefixed(prefix: str) -> dict[str, np.ndarray]:
            return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}
        return cls(round=round_number, params=arrays["params"], scaler=prefixed("scaler."),
                   strategy_state=prefixed("strategy."), parties=meta["parties"], model_config=meta["model"],
                   feature_names=list(meta["feature_names"]), ledger_json=meta.get("ledger"),
                   budget_stop=meta.get("budget_stop"), dp3_clip=meta.get("dp3_clip"),
                   noise=dict(meta.get("noise") or {}))


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    rounds: int
    final_metrics: dict[str, float]
    params: np.ndarray
    scaler: dict[str, np.ndarray]
    model: Model
    histogram: ScoreHistogram | None
    privacy: dict[str, Any] | None = None
    budget_stop: str | None = None


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


def _retry_set(server: SecAggServer | None, exc: SecAggAbort) -> list[str]:
    """Who a failed attempt is retried with: the survivors of the step it stopped at, except after unmask
    shares were revealed — those parties then answer only for the same survivor set U3 in this round."""
    if server is not None and exc.stage == "unmasking" and server.u3:
        return list(server.u3)
    return list(exc.survivors)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


class HorizontalWorkflow:
    def __init__(self, transport: Transport, store: Store, run_id: str, config: RunConfig, seed: int,
                 progress: ProgressHook | None = None) -> None:
        self.transport, self.store, self.run_id = transport, store, run_id
        self.config, self.seed = config, seed
        self.progress = progress or NullProgress()
        self.strategy = build_strategy(config)
        s = config.strategy
        self.aggregator = make_aggregator(s.aggregator, trim_fraction=s.trim_fraction,
                                          byzantine=s.byzantine, multi=s.multi_krum)
        self.privacy = PrivacyControl(config, self._train_config, on_charge=self._persist_charge)
        self.secagg = config.secure_aggregation if config.secure_aggregation and config.secure_aggregation.enabled \
            else None
        self._check_secagg_config()
        self._secagg_nonce = os.urandom(8).hex()  # fresh per coordinator process: labels never repeat on resume
        self._round_events: list[tuple[str, dict[str, Any]]] = []  # audit events saved with the round
        self._traffic_seen: dict[tuple[str, str, str], tuple[int, int]] = {}

    def _train_config(self, round_number: int) -> dict[str, Any]:
        t = self.config.training
        return {"epochs": t.local_epochs, "batch_size": t.batch_size, "learning_rate": t.learning_rate,
                "optimizer": t.optimizer, "momentum": t.momentum, "l2": t.l2, "max_steps": t.local_steps,
                **self.strategy.fit_config(round_number)}

    def _party_rows(self, state: RunState) -> dict[str, int]:
        return {p: int(info["n_train"]) for p, info in state.parties.items()}

    # --- messaging helpers ------------------------------------------------------------------------
    def _request(self, parties: list[str], kind: str, step: int, arrays: dict[str, np.ndarray] | None = None,
                 meta_for: Any = None) -> Iterator[Message]:
        messages = (
            Message(self.run_id, step, COORDINATOR, party, kind, arrays=arrays or {},
                    meta=meta_for(party) if meta_for else {})
            for party in parties
        )
        return self.transport.exchange(messages)

    # --- setup ------------------------------------------------------------------------------------
    def _setup(self) -> RunState:
        parties = sorted(self.transport.parties)
        info: dict[str, dict[str, Any]] = {}
        names: list[str] | None = None
        first = None
        if self.privacy.enabled:  # the row counts are released through a charged mechanism (DP1)
            self.privacy.open(parties, self.store.ledger(self.run_id))  # setup re-run after a crash: still charged
        count = self.privacy.count_request(parties) if self.privacy.enabled else None
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
        self.store.log_event(self.run_id, "parties_joined", {
            "parties": {p: {"n_train": info[p]["n_train"], "n_test": info[p]["n_test"]} for p in sorted(info)},
            "features": len(names), "secure_aggregation": self.secagg is not None})
        scaler: dict[str, np.ndarray] = {}
        if self.config.data.standardize:
            dp1 = self.privacy.dp1_request(names, parties) if self.privacy.enabled else None
            total, sum_, sum_sq = 0.0, np.zeros(len(names)), np.zeros(len(names))
            for reply in self._request(parties, "stats", 0, meta_for=lambda p: {"dp1": dp1} if dp1 else {}):
                total += float(reply.meta["n"])
                sum_ += reply.arrays["sum"]
                sum_sq += reply.arrays["sum_sq"]
            if dp1 is not None:
                scaler = combine_dp1_stats(total, sum_, sum_sq, dp1["bounds"])
            else:
                mean = sum_ / total
                scale = np.sqrt(np.maximum(sum_sq / total - mean**2, 0.0))
                scaler = {"mean": mean, "scale": np.where(scale > 1e-12, scale, 1.0)}
        m = self.config.model
        model_config = {"kind": m.kind, "n_features": len(names)}
        if m.kind == "mlp":
            model_config["hidden"] = list(m.hidden)
        model = model_from_config(model_config)
        params = model.init_params(derive_rng(self.seed, "init"))
        # under SecAgg parties unmask one model for one survivor set only, in any run (review R11): a start drawn
        # from the seed (tiny: logistic regression would start at zeros) keeps runs apart. Drawn with or without
        # SecAgg, so that a secure run trains exactly the model a plain run with the same seed trains.
        params = params + derive_rng(self.seed, "init", "jitter").normal(0.0, INIT_JITTER, params.size)
        return RunState(0, params, scaler, {}, info, model_config, names)

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

    def _fit_round(self, state: RunState, round_number: int) -> tuple[np.ndarray, list[str], float]:
        selected = self._select(round_number, sorted(state.parties))
        self.progress.round_started(round_number, len(selected))
        train_cfg = self._train_config(round_number)
        events = self.privacy.planned_events(self._party_rows(state), selected, round_number)
        if self.secagg is not None and self._stored_sum("secagg_round_sum", round_number) is not None:
            # unmasked (and charged) before a crash: applied from the store, nothing is released again
            return self._secure_fit_round(state, round_number, selected, train_cfg, events)
        # write-ahead: charged durably before any fit request leaves; raises BudgetExceeded instead if it
        # does not fit the durable ledger (so a crash loop ends in a budget stop, never in free releases)
        self._charge(events, round_number)
        if self.secagg is not None:
            return self._secure_fit_round(state, round_number, selected, train_cfg, events)
        rows = self._party_rows(state)
        dp_metas, dp3_settings = self.privacy.fit_meta(round_number, selected, rows if self.privacy.enabled else None)
        self.aggregator.reset()
        loss_sum, n_sum, clipped_sum, indicator_sum = 0.0, 0, None, 0.0
        replies = self._request(
            selected, "fit", round_number, arrays={"params": state.params, **state.scaler},
            meta_for=lambda p: {"model": state.model_config, "train": train_cfg, **dp_metas[p],
                                "seed": derive_seed(self.seed, "fit", round_number, p)})
        for reply in replies:
            # under DP a reply carries no row count and no loss: weights use the released counts
            n = int(reply.meta["n"]) if "n" in reply.meta else rows[reply.sender]
            if dp3_settings is not None:  # DP3: unweighted sum of clipped updates, one running sum
                update = reply.arrays["update"]
                clipped_sum = update.copy() if clipped_sum is None else clipped_sum + update
                indicator_sum += float(reply.meta.get("dp3_indicator", 0.0))  # sent only for adaptive clipping
            else:
                self.aggregator.add(reply.arrays["update"], n)
            if "loss" in reply.meta:
                loss_sum += float(reply.meta["loss"]) * n
                n_sum += n
            self.progress.party_done(reply.sender)
        if self.privacy.dp3 is not None and dp3_settings is not None and clipped_sum is not None:
            mean_update = self.privacy.dp3.aggregate(clipped_sum, indicator_sum, dp3_settings)
            state.dp3_clip = self.privacy.dp3.clip
        else:
            mean_update = self.aggregator.result()
        new_params = self.strategy.apply(state.params, mean_update)
        state.ledger_json = self.privacy.ledger_json()
        return new_params, selected, loss_sum / n_sum if n_sum else math.nan

    def _charge(self, events: list[PrivacyEvent], round_number: int) -> None:
        """Charge a step's ledger events write-ahead (durably, see `_persist_charge`) before its requests."""
        self.privacy.charge(events)

    def _persist_charge(self, ledger_json: str, events: Any) -> None:
        """The ledger and its `budget_charged` audit entry (one line per mechanism), in one transaction."""
        groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
        for e in events:
            groups[(e.level, e.mechanism, e.noise_multiplier, e.sampling_rate, e.count)].append(e.party)
        steps = sorted({e.step for e in events if e.step is not None})
        self.store.charge_ledger(self.run_id, ledger_json, {"round": steps[0] if len(steps) == 1 else steps, "charges": [
            {"level": level, "mechanism": mech, "noise_multiplier": z, "sampling_rate": q, "count": count,
             "parties": sorted(parties)} for (level, mech, z, q, count), parties in sorted(groups.items(), key=str)]})

    # --- secure aggregation -----------------------------------------------------------------------
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
        tried = "; ".join(a["stage"] + ": " + a["reason"] for a in attempts) or "too few parties selected"
        refused = sorted((attempts[-1].get("failed") or {}).items())[:1] if attempts else []  # a party's own
        tried += "".join(f"; party {p!r}: {why}" for p, why in refused)  # reason (one model for one set, ...)
        return FederationError(
            f"{what}: secure aggregation failed {len(attempts)} time(s) ({tried}); {left} parties left, at least "
            f"{floor} needed (secure_aggregation.min_contributors = {self.secagg.min_contributors if self.secagg else '?'}"
            f", run.min_parties = {self.config.run.min_parties}); nothing was aggregated below that minimum")

    def _call_party(self, step: int, kind: str, party: str, arrays: dict[str, np.ndarray],
                    meta: dict[str, Any], failures: dict[str, str]) -> Message | None:
        """One request to one party; a party that errs or cannot be reached is a dropout (None)."""
        try:
            for reply in self.transport.exchange([Message(self.run_id, step, COORDINATOR, party, kind,
                                                          arrays=arrays, meta=meta)]):
                return reply
        except DROPOUT_ERRORS as exc:
            failures[party] = f"{kind}: {type(exc).__name__}: {exc}"[:300]
        return None

    def _secure_fit_round(self, state: RunState, round_number: int, selected: list[str],
                          train_cfg: dict[str, Any], events: list[PrivacyEvent]) -> tuple[np.ndarray, list[str], float]:
        """One training round under SecAgg+: retried with the survivors while enough parties are left."""
        assert self.secagg is not None
        n_params = state.params.size
        rows = self._party_rows(state)
        floor = self._secagg_floor()
        participants = list(selected)
        attempts: list[dict[str, Any]] = []
        stored = self._stored_sum("secagg_round_sum", round_number)
        if stored is not None:  # unmasked before a crash: apply it, never ask the parties again (see _store_sum)
            vector, contributors = np.asarray(stored["sum"], dtype=np.float64), list(stored["contributors"])
            self._round_events.append(("secagg_round", {**stored["event"], "replayed": True}))
            return self._apply_secure_sum(state, round_number, vector, contributors, rows)
        for attempt in range(self.secagg.max_retries + 1 if len(participants) >= floor else 0):
            label = self._secagg_label(f"round-{round_number}", attempt)
            if attempt > 0:  # a retry is a fresh release by every participant: charged write-ahead again
                self._charge(self.privacy.planned_events(rows, participants, round_number), round_number)
            params = self._secagg_params(len(participants))
            dp_metas, dp3_settings = self.privacy.fit_meta(round_number, participants,
                                                           rows if self.privacy.enabled else None)
            total_rows = sum(rows[p] for p in participants)
            failures: dict[str, str] = {}
            server: SecAggServer | None = None

            def call(kind: str, party: str, arrays: Any, meta: Any) -> dict[str, np.ndarray] | None:
                if kind == "fit":  # the masked-input step carries the training request
                    sa_meta = {**meta, "total_rows": total_rows}
                    fit_meta = {"model": state.model_config, "train": train_cfg, **dp_metas[party],
                                "seed": derive_seed(self.seed, "fit", round_number, party), "secagg": sa_meta}
                    if dp3_settings is not None:
                        fit_meta["dp3"] = {**dp3_settings, "noise_parties": int(meta["noise_parties"])}
                    arrays = {"params": state.params, **state.scaler, **arrays}
                    meta = fit_meta
                reply = self._call_party(round_number, kind, party, dict(arrays), dict(meta), failures)
                if reply is not None and kind == "fit":
                    self.progress.party_done(party)
                return dict(reply.arrays) if reply is not None else None

            try:  # the graph depends on the round and the participants, not the attempt: parties lock a round's
                # unmasking to one (survivor set, graph), so a retry over the same survivors must draw the same graph
                server = SecAggServer(params, participants, n_params + 3, label,
                                      derive_rng(self.seed, "secagg-graph", round_number, *participants),
                                      round_id=f"round-{round_number}")
                total = run_secagg(server, call)
            except SecAggAbort as exc:
                summary = {**(server.summary() if server else {}), "failed": {**(server.dropouts if server else {}),
                                                                               **failures}}
                attempts.append({"attempt": attempt, "stage": exc.stage, "reason": exc.reason, **summary})
                self.store.log_event(self.run_id, "secagg_round_failed", {"round": round_number, **attempts[-1]})
                participants = _retry_set(server, exc)
                if len(participants) < floor:
                    break
                continue
            vector = decode_vector(total, params)
            contributors = server.u3
            summary = server.summary()
            summary["failed"] = {**summary["failed"], **failures}
            event = {"round": round_number, "attempt": attempt, "contributors": contributors, **summary}
            self._store_sum("secagg_round_sum", round_number, vector, contributors, event)
            self._round_events.append(("secagg_round", event))
            return self._apply_secure_sum(state, round_number, vector, contributors, rows)
        raise self._secagg_failed(f"round {round_number}", attempts, len(participants))

    def _apply_secure_sum(self, state: RunState, round_number: int, vector: np.ndarray, contributors: list[str],
                          rows: dict[str, int]) -> tuple[np.ndarray, list[str], float]:
        """The new model from a round's unmasked sum [update, indicator, weighted loss, weight]."""
        n_params = state.params.size
        head, indicator, weighted_loss, weight = vector[:n_params], vector[n_params], vector[-2], vector[-1]
        _, dp3_settings = self.privacy.fit_meta(round_number, contributors, rows if self.privacy.enabled else None)
        if self.privacy.dp3 is not None and dp3_settings is not None:
            mean_update = self.privacy.dp3.aggregate(head, indicator, {**dp3_settings, "parties": len(contributors)})
            state.dp3_clip = self.privacy.dp3.clip
        else:
            mean_update = head / weight
        new_params = self.strategy.apply(state.params, mean_update)
        # every participant was charged before its fit request left (write-ahead, see _fit_round)
        state.ledger_json = self.privacy.ledger_json()
        train_loss = math.nan if self.privacy.enabled or weight <= 0 else float(weighted_loss / weight)
        return new_params, contributors, train_loss  # under DP the loss slot is 0: no loss is released

    def _store_sum(self, key: str, step: int, vector: np.ndarray, contributors: list[str],
                   event: dict[str, Any]) -> None:
        """Persist an unmasked sum before anything else happens: parties lock a round to the survivor set
        they revealed unmask shares for, so a crash before the round is saved must not need a second attempt
        (with whoever is alive then); the resumed coordinator applies the stored sum instead."""
        self.store.record_info(self.run_id, key, {"round": step, "sum": [float(x) for x in vector],
                                                  "contributors": list(contributors), "event": event})

    def _stored_sum(self, key: str, step: int) -> dict[str, Any] | None:
        info = self.store.get_run(self.run_id).info or {}
        stored = info.get(key)
        return stored if isinstance(stored, dict) and stored.get("round") == step else None

    def _traffic_delta(self) -> dict[str, Any] | None:
        """What crossed the wire since the last call, per message kind and direction (sizes in bytes).

        `messages_bytes` sums over parties; `by_party` keeps each party's rows, so the receipt can be
        rebuilt from the store alone, across resumes (a resumed coordinator has a fresh transport)."""
        traffic = getattr(self.transport, "traffic", None)
        if traffic is None:
            return None
        delta: dict[str, dict[str, list[int]]] = {}
        by_party: list[dict[str, Any]] = []
        parties: set[str] = set()
        for row in traffic.summary():
            key = (str(row["party"]), str(row["direction"]), str(row["kind"]))
            msgs, size = int(row["messages"]), int(row["bytes"])
            seen = self._traffic_seen.get(key, (0, 0))
            if (msgs, size) == seen:
                continue
            self._traffic_seen[key] = (msgs, size)
            parties.add(key[0])
            entry = delta.setdefault(key[1], {}).setdefault(key[2], [0, 0])
            entry[0] += msgs - seen[0]
            entry[1] += size - seen[1]
            by_party.append({"party": key[0], "direction": key[1], "kind": key[2], "messages": msgs - seen[0],
                             "bytes": size - seen[1]})
        return {"parties": len(parties), "messages_bytes": delta, "by_party": by_party}

    def _traffic_event(self, round_number: int) -> None:
        """Traffic since the last round, saved with the round (one atomic write)."""
        delta = self._traffic_delta()
        if delta is not None:
            self._round_events.append(("traffic", {"round": round_number, **delta}))

    def _flush_events(self, round_number: int) -> None:
        """Events of work done outside a saved round (the final evaluation): traffic included, logged now."""
        self._traffic_event(round_number)
        events, self._round_events = self._round_events, []
        for kind, detail in events:
            self.store.log_event(self.run_id, kind, detail)

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

    def _evaluate_secure(self, state: RunState, step: int, arrays: dict[str, np.ndarray],
                         ) -> tuple[ScoreHistogram, float, float, int, dict[str, dict[str, Any]]]:
        """Evaluation under SecAgg+: each party masks [histogram, loss sum, Brier sum, n]; only the sum is seen.

        Same protocol and dropout handling as a training round (a failed attempt is retried with the
        survivors); no per-party metrics exist in this mode."""
        assert self.secagg is not None
        bins = DP_BINS if self.privacy.enabled else DEFAULT_BINS  # parties bin into exactly DP_BINS under DP
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
            params = replace(self._secagg_params(len(participants)), frac_bits=EVAL_FRAC_BITS,
                             max_abs=EVAL_MAX_ABS)
            label = self._secagg_label(f"evaluate-{step}", attempt)
            failures: dict[str, str] = {}
            server: SecAggServer | None = None

            def call(kind: str, party: str, req: Any, meta: Any) -> dict[str, np.ndarray] | None:
                if kind == "fit":  # the masked-input step carries the evaluation request
                    kind, req, meta = "evaluate", {**arrays, **req}, {"model": state.model_config, "bins": bins,
                                                                      "secagg": dict(meta)}
                reply = self._call_party(step, kind, party, dict(req), dict(meta), failures)
                return dict(reply.arrays) if reply is not None else None

            try:
                server = SecAggServer(params, participants, 3 * bins + 3, label,
                                      derive_rng(self.seed, "secagg-evaluate-graph", step, *participants),
                                      round_id=f"evaluate-{step}")
                total = run_secagg(server, call)
            except SecAggAbort as exc:
                failed = {**(server.dropouts if server else {}), **failures}
                attempts.append({"attempt": attempt, "stage": exc.stage, "reason": exc.reason, "failed": failed})
                self._round_events.append(("secagg_evaluation_failed", {"round": step, **attempts[-1]}))
                participants = _retry_set(server, exc)
                if len(participants) < floor:
                    break
                continue
            event = {"round": step, "attempt": attempt, "contributors": server.u3,
                     "failed": {**server.dropouts, **failures}}
            vector = decode_vector(total, params)
            self._store_sum("secagg_evaluation_sum", step, vector, server.u3, event)
            self._round_events.append(("secagg_evaluation", event))
            histogram, loss_sum, brier_sum, n = evaluation_from_vector(vector, bins)
            return histogram, loss_sum, brier_sum, n, {}
        raise FederationError(
            f"evaluation of round {step}: secure aggregation failed {len(attempts)} time(s) "
            f"({'; '.join(a['stage'] + ': ' + a['reason'] for a in attempts)}); "
            f"{len(participants)} parties left, at least {floor} needed")

    def evaluate(self, state: RunState, step: int) -> tuple[dict[str, float], dict[str, dict[str, Any]], ScoreHistogram]:
        """Global metrics from merged score histograms; per-party metrics as each party reports them.

        With secure aggregation the histograms and sums are summed under SecAgg+ (no per-party
        metrics). Under `[privacy]` this runs once, on the released model (see `run`)."""
        arrays = {"params": state.params, **state.scaler}
        if self.secagg is not None:
            histogram, loss_sum, brier_sum, n, per_party = self._evaluate_secure(state, step, arrays)
        else:
            histogram, loss_sum, brier_sum, n, per_party = self._evaluate_in_clear(state, step, arrays)
        metrics: dict[str, Any] = {"log_loss": loss_sum / max(n, 1), "brier": brier_sum / max(n, 1), "n": n,
                                   "positive_rate": histogram.positive_rate}
        if 0 < histogram.positive_rate < 1:
            metrics.update(auc=histogram.auc(), pr_auc=histogram.pr_auc(), ks=histogram.ks(),
                           ece=histogram.expected_calibration_error())
        return {k: _finite(v) for k, v in metrics.items()}, per_party, histogram

    # --- lifecycle --------------------------------------------------------------------------------
    def run(self) -> RunOutcome:
        total = self.config.run.rounds
        checkpoint = self.store.latest_checkpoint(self.run_id)
        if checkpoint is None:
            state = self._setup()
            if self.privacy.enabled:  # noise is chosen before round 0 is saved, after DP1 was charged
                self.privacy.finish_setup(self._party_rows(state), first_round=1)
                state.noise, state.ledger_json = dict(self.privacy.noise), self.privacy.ledger_json()
                state.dp3_clip = self.privacy.dp3.clip if self.privacy.dp3 is not None else None
                self.store.log_event(self.run_id, "noise_chosen", dict(state.noise))
            arrays, meta = state.to_checkpoint()
            self._traffic_event(0)
            round_events, self._round_events = self._round_events, []
            self.store.save_round(self.run_id, 0, state_arrays=arrays, state_meta=meta, metrics={}, seconds=0.0,
                                  events=round_events)
        else:
            state = RunState.from_checkpoint(checkpoint.round, checkpoint.arrays, checkpoint.meta)
            self.strategy.load_state_dict(state.strategy_state)
            self.store.log_event(self.run_id, "run_resumed", {"from_round": checkpoint.round})
        if checkpoint is not None and self.privacy.enabled:  # resumed: noise and clip from the checkpoint, the
            durable = self.store.ledger(self.run_id)  # ledger from the write-ahead store (it has every charge,
            ledger_json = durable if durable is not None else state.ledger_json  # also those after the checkpoint)
            assert ledger_json is not None
            self.privacy.restore(ledger_json, state.noise, state.dp3_clip)
        self.store.set_status(self.run_id, "running", info={"parties": state.parties,
                                                            "feature_names": state.feature_names})
        self.progress.run_started(self.run_id, total, state.round)
        fault_round = int(os.environ.get(FAULT_ENV, "0") or 0)
        histogram: ScoreHistogram | None = None
        global_metrics: dict[str, float] = {}
        for round_number in range(state.round + 1, total + 1):
            started = time.perf_counter()
            try:
                state.params, selected, train_loss = self._fit_round(state, round_number)
            except BudgetExceeded as exc:  # a clean stop: the model of the last affordable round stands
                state.budget_stop = str(exc)
                self.store.log_event(self.run_id, "budget_stop", {"round": round_number, "reason": str(exc)})
                break
            state.strategy_state = self.strategy.state_dict()
            state.round = round_number
            party_metrics: dict[str, dict[str, Any]] = {}
            # under DP, evaluation runs once, at the end, on the released model (holdout rows are outside
            # the DP unit; the receipt says so): no per-round evaluation release, no training loss
            if round_number == total or (not self.privacy.enabled and round_number % self.config.run.eval_every == 0):
                global_metrics, party_metrics, histogram = self.evaluate(state, round_number)
            seconds = time.perf_counter() - started
            result = RoundResult(round_number, seconds, selected, train_loss,
                                 global_metrics if party_metrics else {}, party_metrics)
            arrays, meta = state.to_checkpoint()
            self._traffic_event(round_number)
            round_events, self._round_events = self._round_events, []
            self.store.save_round(self.run_id, round_number, state_arrays=arrays, state_meta=meta, seconds=seconds,
                                  metrics={"train_loss": _finite(train_loss), "parties": selected,
                                           "global": result.global_metrics, "party": party_metrics},
                                  events=round_events)
            self.progress.round_finished(result)
            if fault_round == round_number:
                os.kill(os.getpid(), signal.SIGKILL)
        if histogram is None:  # DP, resumed after the last round, or stopped by the budget: evaluate once more
            global_metrics, _, histogram = self.evaluate(state, state.round)
            self._flush_events(state.round)
        model = model_from_config(state.model_config)
        privacy = self.privacy.summary()
        return RunOutcome(self.run_id, state.round, global_metrics, state.params, state.scaler, model, histogram,
                          privacy, state.budget_stop)
