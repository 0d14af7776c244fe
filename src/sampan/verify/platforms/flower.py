"""Flower (flwr 1.42) as a platform under test: a thin Benchmark API adapter over a real Flower federation.

Each job starts a Flower server (FedAvg) and one Flower client per platform-operated party, all in Flower's own
venv (flower_proc.py says why), talking Flower's gRPC on 127.0.0.1. A verifier-operated party runs the "flower"
party kit (flower_kit.py): a Flower client dialing the address this adapter hands out at registration, through the
verifier's proxy. The gRPC runs over one-sided TLS (flower_tls.py: a per-project server CA, handed to the
verifier's party as `PartyConnect.ca_pem`; `tls=False` for plaintext); Flower's clients present no certificate on
this transport, so no mTLS claim. Horizontal logistic regression only: vertical jobs, DP and secure aggregation
are refused as `unsupported` (Flower has no vertical LR out of the box; its SecAgg+ and DP mods are not wired
here), and /info claims none of them.

Metrics per round: Flower's federated evaluation (each party scores the global model on its own rows, AUC averaged
by row count, as Flower's examples do), so the "auc" metric is in-sample; the verifier's own holdout goes through
`evaluate`. The model export, `evaluate` and `predict` use the final global model the Flower server kept.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

import numpy as np

from sampan.metrics import log_loss, roc_auc
from sampan.verify.api import (
    Claims,
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
    Standardisation,
    TableData,
    TaskSpec,
)
from sampan.verify.backend import BackendError
from sampan.verify.platforms.flower_jobs import FlowerJob, table_matrix
from sampan.verify.platforms.flower_kit import FlowerKit
from sampan.verify.platforms.flower_proc import flower_python, flower_version, free_port
from sampan.verify.platforms.flower_tls import ServerPKI, server_pki

PROTOCOL = "flower-grpc-bidi"


@dataclass
class _Project:
    project: Project
    parties: dict[str, PartyRegistration] = field(default_factory=dict)
    port: int | None = None  # the Flower server's port for this project's jobs (handed out to verifier parties)
    pki: ServerPKI | None = None  # the Flower server's CA, certificate and key (one-sided TLS), if on


class FlowerBackend:
    """PlatformBackend over Flower: projects and parties in memory, one Flower federation per job."""

    def __init__(self, *, tls: bool = True) -> None:
        flower_python()  # fail now, with the install hint, rather than at the first job
        self.tls = tls
        self._lock = threading.Lock()
        self._projects: dict[str, _Project] = {}
        self._jobs: dict[str, FlowerJob] = {}
        self._version: str | None = None

    def info(self) -> PlatformInfo:
        if self._version is None:
            self._version = flower_version()
        return PlatformInfo(platform="flower", platform_version=f"flwr {self._version}",
                            capabilities=["horizontal", "model_export", "evaluate", "predict", "dropout"],
                            claims=Claims(), party_kit="flower")

    def create_project(self, spec: ProjectCreate) -> Project:
        project = Project(project_id=f"p-{secrets.token_hex(8)}", name=spec.name)
        with self._lock:
            self._projects[project.project_id] = _Project(project, pki=server_pki() if self.tls else None)
        return project

    def _project(self, project_id: str) -> _Project:
        with self._lock:
            found = self._projects.get(project_id)
        if found is None:
            raise BackendError("not_found", f"no project {project_id!r}", "project_id")
        return found

    def register_party(self, project_id: str, registration: PartyRegistration) -> Party:
        project = self._project(project_id)
        with self._lock:
            if registration.name in project.parties:
                raise BackendError("conflict", f"party {registration.name!r} is already registered", "name")
            connect = None
            if registration.operated_by == "verifier":
                if project.port is None:
                    project.port = free_port()
                connect = PartyConnect(address=f"127.0.0.1:{project.port}", protocol=PROTOCOL,
                                       server_name="127.0.0.1" if project.pki else None,
                                       ca_pem=project.pki.ca_pem if project.pki else None)
            project.parties[registration.name] = registration
        return Party(name=registration.name, role=registration.role, operated_by=registration.operated_by,
                     connect=connect)

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        project = self._project(project_id)
        if spec.kind != "horizontal":
            raise BackendError("unsupported", "Flower has no vertical logistic regression out of the box; this "
                               "adapter runs horizontal FedAvg only", "kind")
        if spec.dp is not None:
            raise BackendError("unsupported", "differential privacy is not wired into the Flower adapter", "dp")
        if spec.secure_aggregation:
            raise BackendError("unsupported", "Flower's SecAgg+ is not wired into this adapter", "secure_aggregation")
        parties: dict[str, PartyRegistration] = {}
        for name in spec.features:
            registration = project.parties.get(name)
            if registration is None:
                raise BackendError("invalid", f"party {name!r} is not registered in project {project_id!r}",
                                   "features")
            if registration.data is not None:
                table_matrix(registration.data, list(spec.features[name]) + [spec.label], party=name)
            parties[name] = registration
        job = FlowerJob(project_id=project_id, spec=spec, parties=parties,
                        port=project.port if project.port is not None else free_port(), pki=project.pki)
        with self._lock:
            if any(j.project_id == project_id and not j.snapshot().done for j in self._jobs.values()):
                raise BackendError("conflict", f"project {project_id!r} already has a job running (one Flower "
                                   "server per project at a time)", "project_id")
            self._jobs[job.job_id] = job
        job.start()
        return job.snapshot()

    def _job(self, job_id: str) -> FlowerJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise BackendError("not_found", f"no job {job_id!r}", "job_id")
        return job

    def job(self, job_id: str) -> Job:
        return self._job(job_id).snapshot()

    def cancel(self, job_id: str) -> Job:
        job = self._job(job_id)
        job.cancel()
        return job.snapshot()

    def _finished(self, job_id: str) -> FlowerJob:
        job = self._job(job_id)
        state = job.snapshot().state
        if state != "succeeded":
            raise BackendError("conflict", f"job {job_id!r} is {state}, not succeeded", "job_id")
        return job

    def results(self, job_id: str) -> JobResults:
        job = self._finished(job_id)
        rounds = job.round_results()
        metrics: dict[str, float] = {}
        if rounds and rounds[-1].auc is not None:
            metrics["auc"] = float(rounds[-1].auc)
        if rounds and rounds[-1].loss is not None:
            metrics["logloss"] = float(rounds[-1].loss)
        return JobResults(job_id=job_id, rounds=rounds, metrics=metrics, epsilon_spent=None, audit_log=None)

    def model(self, job_id: str) -> ModelExport:
        job = self._finished(job_id)
        final = job.final_model()
        features = list(next(iter(job.spec.features.values())))
        return ModelExport(features=features, coefficients=final.coefficients, intercept=final.intercept,
                           standardisation=Standardisation(mean=final.mean, scale=final.scale))

    def _scores(self, job_id: str, data: TableData) -> np.ndarray:
        export = self.model(job_id)
        x = table_matrix(data, export.features, party="request", allow_missing=True)
        assert export.standardisation is not None
        z = (x - np.array(export.standardisation.mean)) / np.array(export.standardisation.scale)
        z = np.where(np.isnan(z), 0.0, z)
        logits = z @ np.array(export.coefficients) + export.intercept
        scores: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(logits, -35.0, 35.0)))
        return scores

    def evaluate(self, job_id: str, data: TableData) -> EvaluateResult:
        label = self._job(job_id).spec.label
        if label not in data.columns:
            raise BackendError("invalid", f"the rows to evaluate have no label column {label!r}", "columns")
        scores = self._scores(job_id, data)
        y = table_matrix(data, [label], party="request")[:, 0]
        if np.any((y != 0) & (y != 1)):
            raise BackendError("invalid", f"label column {label!r} holds values other than 0 and 1", label)
        if y.size == 0:
            return EvaluateResult(metrics=EvaluateMetrics(), rows=0)
        both = 0 < y.sum() < y.size
        return EvaluateResult(metrics=EvaluateMetrics(
            auc=float(roc_auc(y.astype(np.int64), scores)) if both else None,
            logloss=float(log_loss(y.astype(np.int64), scores)),
            accuracy=float(np.mean((scores >= 0.5) == (y == 1)))), rows=int(y.size))

    def predict(self, job_id: str, data: TableData) -> PredictResult:
        return PredictResult(scores=[float(s) for s in self._scores(job_id, data)])

    def close(self) -> None:
        """Cancel every job still running (their Flower processes are killed)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel()


def make_flower_backend() -> FlowerBackend:
    """The Flower platform's backend (raises FlowerMissing, with the install hint, when Flower's venv is absent)."""
    return FlowerBackend()


__all__ = ["PROTOCOL", "FlowerBackend", "FlowerKit", "make_flower_backend"]
