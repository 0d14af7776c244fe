"""One Flower job: its federation's processes, its state machine and what the Flower server reported.

The job thread writes each platform-operated party's rows and the job spec to a private temporary folder, starts
the Flower server, then one Flower client per platform party, and follows the server's events (round done, model
done, error) until the job succeeds, fails, is cancelled or runs past `timeout_s`. The folder (the parties' rows
included) is removed when the job ends, whatever the outcome.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sampan.verify.api import ApiError, Job, PartyRegistration, RoundResult, TableData, TaskSpec
from sampan.verify.backend import BackendError
from sampan.verify.platforms.flower_proc import Worker, write_text
from sampan.verify.platforms.flower_tls import ServerPKI


def table_matrix(table: TableData, columns: list[str], *, party: str, allow_missing: bool = False) -> np.ndarray:
    """The named columns as floats (NaN for a missing value when allowed); a bad cell names party and column."""
    out = np.empty((len(table.rows), len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        if name not in table.columns:
            raise BackendError("invalid", f"party {party!r}: column {name!r} is not in its table", "columns")
        k = table.columns.index(name)
        for i, row in enumerate(table.rows):
            value = row[k]
            if value is None:
                if not allow_missing:
                    raise BackendError("invalid", f"party {party!r}: column {name!r}, row {i}: missing value", name)
                out[i, j] = np.nan
                continue
            try:
                out[i, j] = float(value)
            except (TypeError, ValueError):
                raise BackendError("invalid", f"party {party!r}: column {name!r}, row {i}: {value!r} is not a "
                                   "number", name) from None
    return out


@dataclass(frozen=True)
class FinalModel:
    coefficients: list[float]
    intercept: float
    mean: list[float]
    scale: list[float]


def _finite(value: Any) -> float | None:
    """A metric as a finite float, else None (JSON has no NaN)."""
    if value is None:
        return None
    number = float(value)
    return number if np.isfinite(number) else None


def _now() -> datetime:
    return datetime.now(UTC)


class FlowerJob:
    """A job's Flower federation, run in its own thread; snapshots are safe to take from any thread."""

    def __init__(self, *, project_id: str, spec: TaskSpec, parties: dict[str, PartyRegistration], port: int,
                 pki: ServerPKI | None) -> None:
        self.job_id = f"j-{secrets.token_hex(8)}"
        self.project_id = project_id
        self.spec = spec
        self.parties = parties
        self.address = f"127.0.0.1:{port}"
        self.pki = pki
        self._lock = threading.Lock()
        self._job = Job(job_id=self.job_id, project_id=project_id, state="queued", rounds=spec.rounds,
                        created_at=_now())
        self._rounds: list[RoundResult] = []
        self._final: FinalModel | None = None
        self._cancelled = threading.Event()
        self._workers: list[Worker] = []
        self._thread = threading.Thread(target=self._run, name=f"flower-{self.job_id}", daemon=True)

    # ---------------------------------------------------------- views
    def snapshot(self) -> Job:
        with self._lock:
            return self._job.model_copy(deep=True)

    def round_results(self) -> list[RoundResult]:
        with self._lock:
            return [r.model_copy() for r in self._rounds]

    def final_model(self) -> FinalModel:
        with self._lock:
            if self._final is None:
                raise BackendError("conflict", f"job {self.job_id!r} has no model", "job_id")
            return self._final

    # ---------------------------------------------------------- control
    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        with self._lock:
            if self._job.done:
                return
        self._cancelled.set()
        self._kill_all()
        self._thread.join(timeout=15)
        self._finish("cancelled", None)

    def _kill_all(self) -> None:
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.kill()

    def _finish(self, state: str, error: ApiError | None) -> None:
        with self._lock:
            if self._job.done:
                return
            self._job = self._job.model_copy(update={"state": state, "error": error, "finished_at": _now()})

    def _spawn(self, mode: str, spec: dict[str, Any], folder: Path, name: str) -> Worker:
        worker = Worker(mode, spec, folder, name)
        with self._lock:
            self._workers.append(worker)
        if self._cancelled.is_set():
            worker.kill()
        return worker

    # ---------------------------------------------------------- the job thread
    def _run(self) -> None:
        folder = Path(tempfile.mkdtemp(prefix="sampan-flower-"))
        spec = self.spec
        features = list(next(iter(spec.features.values())))
        wait_s = max(5, min(spec.timeout_s, 120))
        try:
            with self._lock:
                self._job = self._job.model_copy(update={"state": "running", "started_at": _now()})
            tls: dict[str, Any] = {}
            root: dict[str, Any] = {}
            if self.pki is not None:
                paths = [write_text(folder / name, pem) for name, pem in (
                    ("ca.pem", self.pki.ca_pem), ("server.pem", self.pki.cert_pem), ("server.key", self.pki.key_pem))]
                tls = {"certificates": [str(p) for p in paths]}
                root = {"root_cert": str(paths[0])}
            server = self._spawn("server", {**tls,
                "address": self.address, "parties": sorted(spec.features), "features": features,
                "label": spec.label, "rounds": spec.rounds, "lr": spec.learning_rate, "epochs": spec.local_epochs,
                "batch": spec.batch_size, "l2": spec.l2, "seed": spec.seed, "wait_s": wait_s,
                "round_timeout_s": wait_s,
                "dropout": None if spec.dropout is None else spec.dropout.model_dump()}, folder, "server")
            for name, registration in sorted(self.parties.items()):
                if registration.data is None:
                    continue  # the verifier runs this one through the flower kit
                data_path = folder / f"{name}.data.json"
                data_path.write_text(registration.data.model_dump_json(), encoding="utf-8")
                drop = spec.dropout.after_round if spec.dropout and spec.dropout.party == name else -1
                self._spawn("client", {**root, "address": self.address, "party": name, "data": str(data_path),
                                       "drop_after": drop, "max_wait_s": wait_s}, folder, f"client-{name}")
            watchdog = threading.Timer(spec.timeout_s, self._timed_out)
            watchdog.daemon = True
            watchdog.start()
            try:
                self._follow(server)
            finally:
                watchdog.cancel()
        except Exception as exc:  # the job fails with a message; the API never shows a traceback
            self._finish("failed", ApiError(code="internal", message=f"Flower job failed: {exc}"))
        finally:
            self._kill_all()
            shutil.rmtree(folder, ignore_errors=True)

    def _timed_out(self) -> None:
        self._finish("failed", ApiError(code="internal", message=f"Flower job ran past its timeout of "
                                        f"{self.spec.timeout_s} s"))
        self._kill_all()

    def _follow(self, server: Worker) -> None:
        for event in server.events():
            op = event.get("op")
            if op == "round":
                result = RoundResult(round=int(event["round"]), seconds=max(0.0, float(event["seconds"])),
                                     auc=_finite(event.get("auc")), loss=_finite(event.get("loss")),
                                     parties=[p for p in event.get("parties", []) if p in self.spec.features])
                with self._lock:
                    self._rounds.append(result)
                    if not self._job.done:
                        self._job = self._job.model_copy(update={"round": result.round})
            elif op == "done":
                values = [*event["coefficients"], event["intercept"]]
                if not np.all(np.isfinite(np.asarray(values, dtype=np.float64))):
                    # Flower's FedAvg averages whatever arrives: a NaN/inf update poisons the global model
                    self._finish("failed", ApiError(code="internal", message="the Flower server's final model is "
                                                    "not finite (FedAvg averaged a non-finite update)"))
                    return
                with self._lock:
                    self._final = FinalModel([float(c) for c in event["coefficients"]], float(event["intercept"]),
                                             [float(m) for m in event["mean"]], [float(s) for s in event["scale"]])
                self._finish("succeeded", None)
                return
            elif op == "error":
                self._finish("failed", ApiError(code="internal", message=f"Flower server: {event.get('message')}"))
                return
        if self._cancelled.is_set():
            return
        self._finish("failed", ApiError(code="internal", message="the Flower server stopped without a model: "
                                        + server.log_tail()))


__all__ = ["FinalModel", "FlowerJob", "table_matrix"]
