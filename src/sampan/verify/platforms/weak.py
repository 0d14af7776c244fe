"""The deliberately weak FL platform: a negative control for the verifier, NEVER a product.

It exists only so that every security test of `sampan.verify` has a platform on which it must fail. It trains for
real (plain FedAvg logistic regression, plain vertical split LR; see weak_jobs.py) and serves Benchmark API v1
through `WeakBackend`, but protects nothing, and it *lies* in /info so the claim checks have something to
contradict:
- claims secure aggregation: it has none (every update is clear JSON and is averaged as is);
- claims DP (epsilon 1.0, delta 1e-5) and reports that epsilon as spent: it adds no noise and clips nothing;
- claims mTLS: its aggregator speaks plain HTTP, or (tls=True) TLS with a self-signed server certificate that
  never asks for a client certificate, so an expired, revoked, wrong-CA or absent client certificate all pass;
- no PSI: vertical ids are joined in the clear; partial logits and residuals travel in the clear;
- no authentication beyond a party name in the body, no replay check, no size, shape or norm check on updates;
- standardisation is pooled from each party's clear column sums and sums of squares.
`WeakKit` is its party kit: what a verifier-operated party runs (horizontal data owner or vertical feature holder).
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

import numpy as np

from sampan.verify.api import (
    Claims,
    DPClaim,
    EvaluateMetrics,
    EvaluateResult,
    Job,
    JobResults,
    ModelExport,
    Party,
    PartyConnect,
    PartyRegistration,
    PlatformInfo,
    PredictResult,
    Project,
    ProjectCreate,
    TableData,
    TaskSpec,
)
from sampan.verify.backend import BackendError
from sampan.verify.platforms import weak_learn as learn
from sampan.verify.platforms.weak_jobs import JobRecord, PartyRecord, run_job
from sampan.verify.platforms.weak_kit import WeakKit
from sampan.verify.platforms.weak_wire import PROTOCOL, Aggregator

PLATFORM = "weak"
VERSION = "1.0-negative-control"
CLAIMED_DP = DPClaim(epsilon=1.0, delta=1e-5, level="record")
TLS_PROTOCOL = "weak-https-json/1"


class WeakBackend:
    """Benchmark API v1 over the weak platform (serve it with `sampan.verify.server.make_benchmark_app`).

    `tls`: serve the party data plane over one-sided TLS (self-signed; client certificates never asked for).
    `holdout`: fraction of rows kept out of training for the reported "auc" (0: all rows train, in-sample AUC).
    """

    def __init__(self, *, tls: bool = False, holdout: float = 0.0) -> None:
        if not 0.0 <= holdout < 1.0:
            raise ValueError(f"holdout must be in [0, 1), got {holdout}")
        self._tls = tls
        self._holdout = holdout
        self._aggregator: Aggregator | None = None
        self._projects: dict[str, dict[str, Any]] = {}
        self._jobs: dict[str, JobRecord] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def aggregator(self) -> Aggregator:
        with self._lock:
            if self._aggregator is None:
                self._aggregator = Aggregator(tls=self._tls)
            return self._aggregator

    def close(self) -> None:
        """Stop every job and the aggregator (jobs still running end as cancelled)."""
        for job in list(self._jobs.values()):
            job.stop.set()
        for job in list(self._jobs.values()):
            thread = getattr(job, "thread", None)
            if isinstance(thread, threading.Thread):
                thread.join(timeout=5)
        if self._aggregator is not None:
            self._aggregator.close()
            self._aggregator = None

    def __enter__(self) -> WeakBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ API
    def info(self) -> PlatformInfo:
        return PlatformInfo(
            platform=PLATFORM, platform_version=VERSION,
            capabilities=["horizontal", "vertical", "secure_aggregation", "dp", "mtls", "model_export", "evaluate",
                          "predict", "dropout", "audit_log"],
            claims=Claims(secure_aggregation=True, dp=CLAIMED_DP, mtls=True, psi=False, audit_log=True),
            party_kit="weak")

    def create_project(self, spec: ProjectCreate) -> Project:
        project_id = "p-" + secrets.token_hex(6)
        with self._lock:
            self._projects[project_id] = {"name": spec.name, "ca_pem": spec.ca_pem, "parties": {}}
        return Project(project_id=project_id, name=spec.name)

    def _project(self, project_id: str) -> dict[str, Any]:
        project = self._projects.get(project_id)
        if project is None:
            raise BackendError("not_found", f"no project {project_id!r}", "project_id")
        return project

    def _job(self, job_id: str) -> JobRecord:
        job = self._jobs.get(job_id)
        if job is None:
            raise BackendError("not_found", f"no job {job_id!r}", "job_id")
        return job

    def register_party(self, project_id: str, registration: PartyRegistration) -> Party:
        parties: dict[str, PartyRecord] = self._project(project_id)["parties"]
        with self._lock:
            if registration.name in parties:
                raise BackendError("conflict", f"party {registration.name!r} is already registered", "name")
            parties[registration.name] = PartyRecord(registration.name, registration.role,
                                                     registration.operated_by, registration.data)
        connect = None
        if registration.operated_by == "verifier":  # its certificate is kept nowhere and checked never
            aggregator = self.aggregator()
            connect = PartyConnect(address=aggregator.address, protocol=TLS_PROTOCOL if self._tls else PROTOCOL,
                                   server_name="localhost", ca_pem=aggregator.cert_pem)
        return Party(name=registration.name, role=registration.role, operated_by=registration.operated_by,
                     connect=connect)

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        parties: dict[str, PartyRecord] = self._project(project_id)["parties"]
        _check_task(spec, parties)
        job_id = "j-" + secrets.token_hex(8)
        task = {"kind": spec.kind, "features": spec.features, "label": spec.label, "id_column": spec.id_column,
                "rounds": spec.rounds, "local_epochs": spec.local_epochs, "learning_rate": spec.learning_rate,
                "batch_size": spec.batch_size, "l2": spec.l2,
                "dropout": spec.dropout.model_dump() if spec.dropout else None}
        room = self.aggregator().open_room(job_id, task)
        job = JobRecord(job_id=job_id, project_id=project_id, spec=spec,
                        parties={n: parties[n] for n in spec.features}, room=room, holdout=self._holdout)
        job.log("api", "job.submit", f"{spec.kind}, {spec.rounds} rounds, parties {', '.join(spec.features)}")
        with self._lock:
            self._jobs[job_id] = job
        thread = threading.Thread(target=run_job, args=(job,), name=f"weak-{job_id}", daemon=True)
        job.thread = thread  # type: ignore[attr-defined]
        thread.start()
        return self.job(job_id)

    def job(self, job_id: str) -> Job:
        job = self._job(job_id)
        return Job(job_id=job.job_id, project_id=job.project_id, state=job.state,  # type: ignore[arg-type]
                   round=job.round, rounds=job.spec.rounds, error=job.error, created_at=job.created_at,
                   started_at=job.started_at, finished_at=job.finished_at)

    def cancel(self, job_id: str) -> Job:
        job = self._job(job_id)
        job.stop.set()
        thread = getattr(job, "thread", None)
        if isinstance(thread, threading.Thread):
            thread.join(timeout=2)
        return self.job(job_id)

    def _done(self, job_id: str) -> JobRecord:
        job = self._job(job_id)
        if job.state != "succeeded" or job.model is None:
            raise BackendError("conflict", f"job {job_id!r} is {job.state}, not succeeded", "job_id")
        return job

    def results(self, job_id: str) -> JobResults:
        job = self._done(job_id)
        dp = job.spec.dp
        spent = {n: dp.epsilon for n in job.spec.features} if dp is not None else None  # claimed, never enforced
        return JobResults(job_id=job_id, rounds=job.rounds_done, metrics=job.metrics, epsilon_spent=spent,
                          audit_log=list(job.audit))

    def model(self, job_id: str) -> ModelExport:
        model = self._done(job_id).model
        assert model is not None
        if not np.all(np.isfinite([*model.coefficients, model.intercept])):  # a NaN update went straight in
            raise BackendError("internal", f"job {job_id!r}: the averaged model is not finite (NaN or infinity)")
        return model

    def _scores(self, job_id: str, data: TableData) -> np.ndarray:
        model = self.model(job_id)
        columns = [_column_for(feature, data) for feature in model.features]
        X = learn.numeric_matrix(data, columns, party="verifier") if data.rows else np.empty((0, len(columns)))
        if model.standardisation is not None:
            X = (X - np.asarray(model.standardisation.mean)) / np.asarray(model.standardisation.scale)
        return learn.sigmoid(X @ np.asarray(model.coefficients) + model.intercept)

    def evaluate(self, job_id: str, data: TableData) -> EvaluateResult:
        label = self._job(job_id).spec.label
        if label not in data.columns:
            raise BackendError("invalid", f"the rows have no label column {label!r}", "columns")
        try:
            p = self._scores(job_id, data)
            y = learn.labels(data, label, party="verifier")
        except learn.WeakDataError as exc:
            raise BackendError("invalid", str(exc), "rows") from exc
        metrics = learn.score_metrics(y, p) if y.size else {}
        return EvaluateResult(metrics=EvaluateMetrics(**metrics), rows=int(y.size))

    def predict(self, job_id: str, data: TableData) -> PredictResult:
        try:
            return PredictResult(scores=self._scores(job_id, data).tolist())
        except learn.WeakDataError as exc:
            raise BackendError("invalid", str(exc), "rows") from exc


def _column_for(feature: str, data: TableData) -> str:
    """A model feature's column in given rows: the name itself, or for "party:column" the plain column."""
    if feature in data.columns:
        return feature
    plain = feature.partition(":")[2]
    if plain and plain in data.columns:
        return plain
    raise BackendError("invalid", f"the rows have no column for feature {feature!r}", "columns")


def _check_task(spec: TaskSpec, parties: dict[str, PartyRecord]) -> None:
    """Refuse a task the weak platform cannot run, naming the field (it checks nothing about security)."""
    for name in spec.features:
        if name not in parties:
            raise BackendError("invalid", f"party {name!r} is not registered in this project", "features")
    if spec.kind == "horizontal":
        for name, columns in spec.features.items():
            data = parties[name].data
            for column in [*columns, spec.label]:
                if data is not None and column not in data.columns:
                    raise BackendError("invalid", f"party {name!r} has no column {column!r}", "features")
        return
    holders = [n for n in spec.features if parties[n].role == "label_holder"]
    if len(holders) != 1:
        raise BackendError("invalid", f"vertical needs exactly one label_holder, got {len(holders)}", "features")
    if parties[holders[0]].operated_by != "platform":
        raise BackendError("unsupported", "the weak platform runs the label holder itself", "features")
    if spec.dropout is not None:
        raise BackendError("unsupported", "the weak platform cannot drop a vertical party", "dropout")
    for name, columns in spec.features.items():
        data = parties[name].data
        needed = [*columns, spec.id_column or ""] + ([spec.label] if name == holders[0] else [])
        for column in needed:
            if data is not None and column not in data.columns:
                raise BackendError("invalid", f"party {name!r} has no column {column!r}",
                                   "label" if column == spec.label else "features")


__all__ = ["CLAIMED_DP", "PLATFORM", "WeakBackend", "WeakKit"]
