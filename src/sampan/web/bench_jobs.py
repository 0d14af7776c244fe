"""One Benchmark API job on Sampan's real machinery: tables, RunConfig, federation, runner, results.

Why a module of its own: `bench_api.SampanBackend` keeps the API's bookkeeping (projects, parties, job states);
this module turns one `TaskSpec` into exactly what `sampan run` would do. Each party's rows are written as that
party's table in the project's private folder, the `RunConfig` is built from the spec (horizontal: FedAvg LR, SecAgg+
when asked, DP3 at the aggregator when `dp` is set; vertical: PSI then secure vertical LR), and the job runs through
`sampan.runtime.runner.start_run` with the project's SQLite store. The federation is the runner's own simulated one,
built here (as `sampan.runtime.federation` does) so that two parties can be wrapped: the verifier's party (a `Seat`
of `sampan.verify.platforms.sampan_kit`: its messages go to the verifier's tap) and a party told to drop out (it
stops answering after its round, as a dead process does).
"""

from __future__ import annotations

import csv
import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sampan.config import parse_config
from sampan.core.capability import PartySetup
from sampan.errors import ConfigError, DataError
from sampan.runtime.capabilities import get_capability
from sampan.runtime.runner import FinishedRun, start_run
from sampan.runtime.store import Store
from sampan.verify.api import AuditEntry, RoundResult, TableData, TaskSpec
from sampan.verify.backend import BackendError
from sampan.verify.platforms.sampan_kit import Seat
from sampan.verify.platforms.sampan_taps import Seated as _Seated
from sampan.verify.platforms.sampan_taps import seat_mod as _seat_mod
from sampan.web.bench_config import strategy_section, vertical_fractions
from sampan.wire import Message

__all__ = ["JobRun", "PartyEntry", "build_config", "config_data", "write_table"]

VERTICAL_BATCH = 64  # the smallest batch secure vertical LR accepts (it must exceed 4 x the widest party's columns)


@dataclass(frozen=True)
class PartyEntry:
    """A registered party: platform-operated ones carry their rows, verifier-operated ones do not."""

    name: str
    role: str
    operated_by: str
    data: TableData | None = None
    pin: str | None = None  # deployed mode, verifier-operated: the key its registered certificate pins


def now() -> datetime:
    return datetime.now(UTC)


def write_table(path: Path, data: TableData, columns: list[str], *, party: str, id_column: str,
                label: str | None) -> None:
    """Write ``columns`` of ``data`` as a CSV (an id column is made when the table has none; labels as 0/1)."""
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise BackendError("invalid", f"party {party!r}: its table has no column(s) {', '.join(map(repr, missing))}",
                           "features")
    index = {c: j for j, c in enumerate(data.columns)}
    own_ids = id_column in index
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow([id_column, *columns, *([label] if label else [])])
        for i, row in enumerate(data.rows):
            ids = [row[index[id_column]] if own_ids else f"{party}-{i}"]
            cells = ["" if row[index[c]] is None else row[index[c]] for c in columns]
            if label:
                cells.append(_label(row[index[label]], party, i, label))
            out.writerow(ids + cells)


def _label(value: Any, party: str, row: int, column: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if number not in (0.0, 1.0):
        raise BackendError("invalid", f"party {party!r}, row {row}: label {column!r} must be 0 or 1, got {value!r}",
                           "label")
    return int(number)


def build_config(spec: TaskSpec, folder: Path, parties: Mapping[str, PartyEntry], seed: int) -> Any:
    """The `RunConfig` `sampan run` would read for this job (tables already written under ``folder``)."""
    data = config_data(spec, folder, parties, seed)
    return parse_config(data, source="benchmark task spec")


def config_data(spec: TaskSpec, folder: Path, parties: Mapping[str, PartyEntry], seed: int) -> dict[str, Any]:
    """The run config of this job as TOML data (`build_config` parses it; the deployed mode submits it)."""
    id_column = spec.id_column or "id"
    run = {"name": "bench", "seed": seed, "report_dir": ""}
    if spec.kind == "vertical":
        holder = _label_holder(spec, parties)
        features = [c for cols in spec.features.values() for c in cols]
        if len(set(features)) != len(features):
            raise BackendError("unsupported", "vertical: Sampan needs each feature name held by one party only",
                               "features")
        if spec.dp is not None or spec.secure_aggregation:
            raise BackendError("unsupported", "vertical: Sampan's secure vertical LR keeps every intermediate secret "
                               "by construction; `dp` and `secure_aggregation` apply to horizontal jobs only", "dp")
        return {
            "run": {**run, "workflow": "vertical"},
            "schema": {"id": id_column, "label": spec.label, "features": features},
            "vertical": {"label_holder": holder, "models": ["lr"], **vertical_fractions(spec, folder),
                         "lr": {"learning_rate": spec.learning_rate, "epochs": spec.rounds, "l2": spec.l2,
                                "batch_size": _vertical_batch(spec), "patience": spec.rounds}},
            "parties": [{"name": p, "path": str(folder / f"{p}.csv"), "features": cols}
                        for p, cols in spec.features.items()]}
    columns = next(iter(spec.features.values()))
    # Sampan holds out data.test_fraction (0.2) of each party's rows, by seed, for its own per-round evaluation
    # (it refuses to evaluate on rows it trained on): the model is trained on the other 80%
    data: dict[str, Any] = {
        "run": {**run, "workflow": "horizontal", "rounds": spec.rounds},
        "schema": {"id": id_column, "label": spec.label, "features": columns},
        "training": {"local_epochs": spec.local_epochs, "learning_rate": spec.learning_rate,
                     "batch_size": spec.batch_size, "l2": spec.l2},
        "parties": [{"name": p, "path": str(folder / f"{p}.csv")} for p in spec.features]}
    data.update(strategy_section(spec))  # the spec's aggregator (robust ones only without SecAgg+ and DP)
    if spec.secure_aggregation:
        data["secure_aggregation"] = {"enabled": True}
    if spec.dp is not None:  # DP3 at the aggregator; standardising would need public bounds per feature (DP1)
        # under SecAgg+ the coordinator sees only the sum, so each party adds its share of the noise (distributed)
        mode = "distributed" if spec.secure_aggregation else "central"
        data["privacy"] = {"epsilon": spec.dp.epsilon, "delta": spec.dp.delta or 1e-5,
                           "dp3": {"clip": spec.dp.clip, "mode": mode}}
        data["data"] = {"standardize": False}
    return data


def _vertical_batch(spec: TaskSpec) -> int:
    """Secure vertical LR's smallest safe batch: 4 x the widest party's model columns (the label holder's count its
    intercept: one more than its features), at least 64 (a smaller batch would let a party solve its gradient for
    the labels); the spec's batch when it is larger."""
    return max(VERTICAL_BATCH, 4 * (max(len(c) for c in spec.features.values()) + 1), spec.batch_size)


def _label_holder(spec: TaskSpec, parties: Mapping[str, PartyEntry]) -> str:
    holders = [p for p in spec.features if parties[p].role == "label_holder"]
    if len(holders) != 1:
        raise BackendError("invalid", f"vertical: exactly one party must be registered as label_holder, got "
                           f"{holders or 'none'}", "features")
    return holders[0]


class _Leaving:
    """A party that stops answering after ``after_round`` (what a crashed party looks like to the coordinator)."""

    def __init__(self, app: Any, after_round: int) -> None:
        self.app, self.name, self.after = app, app.name, after_round

    def handle(self, message: Message) -> Message:
        if message.step > self.after:
            raise ConnectionError(f"party {self.name!r} left after round {self.after} (benchmark dropout)")
        reply: Message = self.app.handle(message)
        return reply


@dataclass
class JobRun:
    """A job's live state, updated by its thread and read by the API (under ``lock``)."""

    job_id: str
    project_id: str
    spec: TaskSpec
    state: str = "queued"
    round: int = 0
    error: tuple[str, str, str | None] | None = None  # (code, message, field)
    created_at: datetime = field(default_factory=now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    rounds: list[RoundResult] = field(default_factory=list)
    finished: FinishedRun | None = None
    intersection: int | None = None  # vertical: the rows PSI aligned (the runner's `aligned` progress event)
    store: Store | None = None  # deployed mode: the job's coordinator store (None: the project's store)
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def execute(self, folder: Path, store: Store, parties: Mapping[str, PartyEntry],
                seats: Callable[[str], Seat]) -> None:
        """The job's whole life (run in its own thread); never raises: failures become state ``failed``."""
        with self.lock:
            self.state, self.started_at = "running", now()
        deadline = time.monotonic() + self.spec.timeout_s
        taken: dict[str, Seat] = {}
        try:
            tables = self._collect(parties, seats, taken, deadline)
            seed = self.spec.seed if self.spec.seed is not None else secrets.randbits(62)
            job_folder = folder / self.job_id
            job_folder.mkdir(mode=0o700)
            for name, data in tables.items():
                label = self.spec.label if (self.spec.kind == "horizontal"
                                            or parties[name].role == "label_holder") else None
                write_table(job_folder / f"{name}.csv", data, list(self.spec.features[name]), party=name,
                            id_column=self.spec.id_column or "id", label=label)
            config = build_config(self.spec, job_folder, parties, seed)
            self._train(config, store, seed, taken, deadline)
            with self.lock:
                self.state = "succeeded"
        except BackendError as exc:
            self._fail(exc.code, exc.message, exc.field, taken)
        except (ConfigError, DataError) as exc:  # the job's data or spec, named by the config or loader check
            self._fail("invalid", str(exc), None, taken)
        except Exception as exc:  # noqa: BLE001 - the API reports every failure as a state, never a traceback
            if self.cancel.is_set():
                self._fail(None, "cancelled", None, taken)
            else:
                self._fail("internal", f"{type(exc).__name__}: {exc}", None, taken)
        finally:
            with self.lock:
                self.finished_at = now()
            # every verifier-operated party's seat ends with the job, also one its kit has not taken yet (a kit
            # that comes late must not wait for a job that already ended)
            for name in self.spec.features:
                if parties[name].operated_by == "verifier" and name not in taken:
                    taken[name] = seats(name)
            with self.lock:
                error = self.error[1] if self.error else ("cancelled" if self.state == "cancelled" else None)
            for place in taken.values():
                if not place.done.is_set():
                    place.finish(error)

    def _fail(self, code: str | None, message: str, field_: str | None, taken: Mapping[str, Seat]) -> None:
        with self.lock:
            if code is None or self.cancel.is_set():
                self.state = "cancelled"
            else:
                self.state, self.error = "failed", (code, message, field_)
        for place in taken.values():
            place.finish(message)

    def _collect(self, parties: Mapping[str, PartyEntry], seats: Callable[[str], Seat], taken: dict[str, Seat],
                 deadline: float) -> dict[str, TableData]:
        tables: dict[str, TableData] = {}
        for name in self.spec.features:
            entry = parties[name]
            if entry.operated_by == "platform":
                assert entry.data is not None
                tables[name] = entry.data
                continue
            place = taken[name] = seats(name)
            while not place.ready.wait(0.05):
                if self.cancel.is_set():
                    raise BackendError("conflict", "cancelled before the verifier's party joined")
                if time.monotonic() > deadline:
                    raise BackendError("invalid", f"party {name!r} (operated by the verifier) never joined: no kit "
                                       f"ran it within timeout_s={self.spec.timeout_s}", "timeout_s")
            assert place.data is not None
            tables[name] = place.data
        return tables

    def _train(self, config: Any, store: Store, seed: int, taken: Mapping[str, Seat], deadline: float) -> None:
        from sampan.transport.inprocess import InProcessTransport  # loads only when a job runs

        capability = get_capability(self.spec.kind)
        setups: dict[str, PartySetup] = capability.simulate(config, seed)
        apps: dict[str, Any] = {}
        for name, setup in setups.items():
            setup.registry = setup.registry or store
            app: Any = capability.party_app(setup)
            if name in taken:
                if self.spec.kind == "horizontal":
                    _seat_mod(app, taken[name])
                app = _Seated(app, taken[name])
            if self.spec.dropout is not None and self.spec.dropout.party == name:
                app = _Leaving(app, self.spec.dropout.after_round)
            apps[name] = app
        transport = InProcessTransport(apps)

        def cancelled() -> bool:
            return self.cancel.is_set() or time.monotonic() > deadline

        try:
            finished = start_run(config, store, self._progress, transport=transport, cancelled=cancelled)
        finally:
            transport.close()
        with self.lock:
            self.finished = finished

    def _progress(self, stage: str, info: Mapping[str, Any]) -> None:
        if stage == "aligned" and "n_aligned" in info:
            with self.lock:
                self.intersection = int(info["n_aligned"])
            return
        if stage == "round":
            loss = info.get("train_loss")
            auc = (info.get("global") or {}).get("auc")
            result = RoundResult(round=int(info["round"]), seconds=max(0.0, float(info.get("seconds", 0.0))),
                                 auc=None if auc is None else float(auc),
                                 loss=None if loss is None or not math.isfinite(float(loss)) else float(loss),
                                 parties=[str(p) for p in info.get("parties") or []])
        elif stage == "epoch":
            result = RoundResult(round=int(info["epoch"]), seconds=max(0.0, float(info.get("seconds", 0.0))),
                                 parties=list(self.spec.features))
        else:
            return
        with self.lock:
            self.round = result.round
            self.rounds.append(result)


def round_aucs(store: Store, run_id: str) -> dict[int, float]:
    """Per-round holdout AUC the coordinator recorded (under SecAgg+ the evaluation of round r rides round r+1)."""
    out: dict[int, float] = {}
    for event in store.events(run_id):
        metrics = (event.detail or {}).get("metrics") if event.kind in ("secagg_evaluation", "evaluation") else None
        if isinstance(metrics, dict) and metrics.get("auc") is not None and "round" in event.detail:
            try:
                out[int(event.detail["round"])] = float(metrics["auc"])
            except (TypeError, ValueError):
                continue
    return out


def audit_entries(store: Store, run_id: str, limit: int = 2000) -> list[AuditEntry]:
    """The run's signed, hash-chained events as API audit entries (actor: the party a detail names, else the
    coordinator; detail: the event's JSON with its signing key id)."""
    entries = []
    for event in store.events(run_id)[:limit]:
        detail = dict(event.detail or {})
        actor = str(detail.get("party") or "coordinator")[:200]
        text = json.dumps({"detail": detail, "key_id": event.key_id, "hash": event.hash}, default=str)
        entries.append(AuditEntry(time=event.at, actor=actor, action=event.kind[:200], detail=text[:4000]))
    return entries
