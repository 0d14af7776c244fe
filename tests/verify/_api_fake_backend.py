"""A tiny in-memory PlatformBackend for the Benchmark API tests (no training: jobs count rounds in a thread)."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime

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
    RoundResult,
    TableData,
    TaskSpec,
)
from sampan.verify.backend import BackendError


class FakeBackend:
    """Projects, parties and jobs in dicts; `round_seconds` paces a job; job id "boom" raises a plain bug."""

    def __init__(self, round_seconds: float = 0.01, version: str = "1.0") -> None:
        self.round_seconds, self.version = round_seconds, version
        self.projects: dict[str, Project] = {}
        self.parties: dict[str, dict[str, PartyRegistration]] = {}
        self.jobs: dict[str, Job] = {}
        self.specs: dict[str, TaskSpec] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def info(self) -> PlatformInfo:
        return PlatformInfo(api_version=self.version, platform="fake", platform_version="0",
                            capabilities=["horizontal", "model_export", "evaluate", "predict"],
                            claims=Claims(), party_kit=None)

    def create_project(self, spec: ProjectCreate) -> Project:
        project = Project(project_id=f"p{next(self._ids)}", name=spec.name)
        self.projects[project.project_id] = project
        self.parties[project.project_id] = {}
        return project

    def register_party(self, project_id: str, registration: PartyRegistration) -> Party:
        parties = self._parties(project_id)
        if registration.name in parties:
            raise BackendError("conflict", f"party {registration.name!r} is already registered", "name")
        parties[registration.name] = registration
        connect = (PartyConnect(address="127.0.0.1:9", protocol="fake") if registration.operated_by == "verifier"
                   else None)
        return Party(name=registration.name, role=registration.role, operated_by=registration.operated_by,
                     connect=connect)

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        parties = self._parties(project_id)
        if spec.kind != "horizontal":
            raise BackendError("unsupported", "this platform trains horizontal jobs only", "kind")
        for name in spec.features:
            if name not in parties:
                raise BackendError("invalid", f"party {name!r} is not registered", f"features.{name}")
        job = Job(job_id=f"j{next(self._ids)}", project_id=project_id, state="queued", rounds=spec.rounds,
                  created_at=datetime.now(UTC))
        self.jobs[job.job_id], self.specs[job.job_id] = job, spec
        threading.Thread(target=self._train, args=(job.job_id,), daemon=True).start()
        return job

    def _train(self, job_id: str) -> None:
        self._update(job_id, state="running", started_at=datetime.now(UTC))
        for r in range(1, self.jobs[job_id].rounds + 1):
            time.sleep(self.round_seconds)
            if self.jobs[job_id].state == "cancelled":
                return
            self._update(job_id, round=r)
        self._update(job_id, state="succeeded", finished_at=datetime.now(UTC))

    def _update(self, job_id: str, **changes: object) -> None:
        with self._lock:
            if self.jobs[job_id].state != "cancelled":
                self.jobs[job_id] = self.jobs[job_id].model_copy(update=changes)

    def _parties(self, project_id: str) -> dict[str, PartyRegistration]:
        if project_id not in self.parties:
            raise BackendError("not_found", f"no project {project_id!r}", "project_id")
        return self.parties[project_id]

    def job(self, job_id: str) -> Job:
        if job_id == "boom":
            raise RuntimeError("secret row 42: 1234.5")
        if job_id not in self.jobs:
            raise BackendError("not_found", f"no job {job_id!r}", "job_id")
        return self.jobs[job_id]

    def cancel(self, job_id: str) -> Job:
        job = self.job(job_id)
        if job.done:
            raise BackendError("conflict", f"job {job_id!r} is already {job.state}")
        with self._lock:
            self.jobs[job_id] = job.model_copy(update={"state": "cancelled", "finished_at": datetime.now(UTC)})
        return self.jobs[job_id]

    def _succeeded(self, job_id: str) -> TaskSpec:
        job = self.job(job_id)
        if job.state != "succeeded":
            raise BackendError("conflict", f"job {job_id!r} is {job.state}, not succeeded")
        return self.specs[job_id]

    def results(self, job_id: str) -> JobResults:
        spec = self._succeeded(job_id)
        rounds = [RoundResult(round=r, seconds=self.round_seconds, auc=0.5, loss=0.69, parties=list(spec.features))
                  for r in range(1, spec.rounds + 1)]
        return JobResults(job_id=job_id, rounds=rounds, metrics={"auc": 0.5})

    def model(self, job_id: str) -> ModelExport:
        spec = self._succeeded(job_id)
        features = next(iter(spec.features.values()))
        return ModelExport(features=features, coefficients=[0.0] * len(features), intercept=0.0)

    def evaluate(self, job_id: str, data: TableData) -> EvaluateResult:
        spec = self._succeeded(job_id)
        if spec.label not in data.columns:
            raise BackendError("invalid", f"the rows have no label column {spec.label!r}", "columns")
        return EvaluateResult(metrics=EvaluateMetrics(auc=0.5, logloss=0.693, accuracy=0.5), rows=len(data.rows))

    def predict(self, job_id: str, data: TableData) -> PredictResult:
        self._succeeded(job_id)
        return PredictResult(scores=[0.5] * len(data.rows))
