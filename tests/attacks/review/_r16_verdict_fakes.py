"""Dishonest platforms for the R16-VERDICT review: small subclasses of the weak platform (`WeakBackend`) that game
the verification catalogue through nothing but the Benchmark API and the weak wire (public classes only).

Each one cheats in one way; the repro tests assert the verdict a correct catalogue would give (fail), so they
xfail while the catalogue can be gamed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from sampan.verify.api import (
    Job,
    JobResults,
    ModelExport,
    Party,
    PartyConnect,
    PartyRegistration,
    PlatformInfo,
    Project,
    ProjectCreate,
    TableData,
    TaskSpec,
)
from sampan.verify.platforms.weak import WeakBackend

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
TOKEN = "tok-r16-verdict"


class Recording(WeakBackend):
    """The weak platform that remembers project names, registrations and task specs (what any platform sees)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.names: dict[str, str] = {}
        self.parties: dict[str, dict[str, PartyRegistration]] = {}
        self.specs: list[TaskSpec] = []
        self.job_project: dict[str, str] = {}
        self.job_spec: dict[str, TaskSpec] = {}

    def create_project(self, spec: ProjectCreate) -> Project:
        project = super().create_project(spec)
        self.names[project.project_id] = spec.name
        self.parties[project.project_id] = {}
        return project

    def register_party(self, project_id: str, registration: PartyRegistration) -> Party:
        party = super().register_party(project_id, registration)
        self.parties[project_id][registration.name] = registration
        return party

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        self.specs.append(spec)
        job = super().submit_job(project_id, spec)
        self.job_project[job.job_id] = project_id
        self.job_spec[job.job_id] = spec
        return job

    def room(self, job_id: str) -> Any:
        return self.aggregator().rooms[job_id]

    def project_of(self, job_id: str) -> str:
        return self.names[self.job_project[job_id]]


def _column_all_zero(registration: PartyRegistration, column: str) -> bool:
    data = registration.data
    if data is None or column not in data.columns:
        return False
    k = data.columns.index(column)
    return all(float(row[k] or 0.0) == 0.0 for row in data.rows)


class CanaryFreezer(Recording):
    """No DP at all; but a feature that is all zeros in every party the platform holds (the verifier's canary
    columns: only the verifier's party has a 1 in them) keeps its starting weight, in every model it publishes and
    in the export. The real columns train as plain FedAvg, updates in the clear."""

    def frozen(self, job_id: str) -> set[int]:
        project = self.job_project[job_id]
        features = next(iter(self.job_spec[job_id].features.values()))
        held = [r for r in self.parties[project].values() if r.operated_by == "platform"]
        return {i for i, c in enumerate(features) if held and all(_column_all_zero(r, c) for r in held)}

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = super().submit_job(project_id, spec)
        frozen = self.frozen(job.job_id)
        room = self.room(job.job_id)
        publish = room.publish

        def freezing_publish(**changes: Any) -> None:
            model = changes.get("model")
            if isinstance(model, dict) and "weights" in model:
                weights = list(model["weights"])
                for i in frozen:
                    weights[i] = 0.0
                changes["model"] = {**model, "weights": weights}
            publish(**changes)

        room.publish = freezing_publish
        return job

    def model(self, job_id: str) -> ModelExport:
        model = super().model(job_id)
        frozen = self.frozen(job_id)
        coefficients = [0.0 if i in frozen else c for i, c in enumerate(model.coefficients)]
        return model.model_copy(update={"coefficients": coefficients})


class FakeRoundAuc(Recording):
    """Trains nothing useful (the export is the zero model, AUC 0.5), but reports AUC 0.99 for every round."""

    def results(self, job_id: str) -> JobResults:
        results = super().results(job_id)
        return results.model_copy(update={"rounds": [r.model_copy(update={"auc": 0.99}) for r in results.rounds]})

    def model(self, job_id: str) -> ModelExport:
        model = super().model(job_id)
        return model.model_copy(update={"coefficients": [0.0] * len(model.coefficients), "intercept": 0.0})


class CentralExport(Recording):
    """Federated training is broken (learning rate forced to 0: every model the parties receive is zero); the
    export (and /predict, /evaluate) is a logistic regression the platform fitted centrally on the rows it holds."""

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        return super().submit_job(project_id, spec.model_copy(update={"learning_rate": 0.0}))

    def model(self, job_id: str) -> ModelExport:
        spec = self.job_spec[job_id]
        held = [r.data for r in self.parties[self.job_project[job_id]].values()
                if r.operated_by == "platform" and r.data is not None]
        return refit(super().model(job_id), held, spec.label)


def refit(model: ModelExport, tables: list[TableData], label: str) -> ModelExport:
    """``model`` with its coefficients replaced by a plain LR fitted on ``tables`` (same features, same scaling)."""
    from sampan.verify.datasets import fit_lr

    X: list[list[float]] = []
    y: list[float] = []
    for data in tables:
        idx = [data.columns.index(c) for c in model.features]
        lab = data.columns.index(label)
        X += [[float(row[i]) for i in idx] for row in data.rows]  # type: ignore[arg-type]
        y += [float(row[lab]) for row in data.rows]  # type: ignore[arg-type]
    A, b = np.asarray(X), np.asarray(y)
    assert model.standardisation is not None
    mean, scale = np.asarray(model.standardisation.mean), np.asarray(model.standardisation.scale)
    coef, intercept = fit_lr((A - mean) / scale, b)
    return model.model_copy(update={"coefficients": coef.tolist(), "intercept": float(intercept)})


class HoldoutLearner(Recording):
    """Plain FedAvg, no robust rule; but it keeps the labelled rows the verifier sends to /evaluate (its holdout)
    and every job submitted after that exports a model fitted on them."""

    seen: TableData | None = None

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.after: set[str] = set()

    def evaluate(self, job_id: str, data: TableData) -> Any:
        self.seen = data
        return super().evaluate(job_id, data)

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = super().submit_job(project_id, spec)
        if self.seen is not None:
            self.after.add(job.job_id)
        return job

    def model(self, job_id: str) -> ModelExport:
        model = super().model(job_id)
        if job_id not in self.after or self.seen is None:
            return model
        return refit(model, [self.seen], self.job_spec[job_id].label)


class LoudStep(Recording):
    """Tells the verifier's party kit (over the weak wire's task view) a larger learning rate than the verifier
    asked for (x 1e5): its updates still travel in the clear, only larger by a factor the server knows."""

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = super().submit_job(project_id, spec)
        room = self.room(job.job_id)
        room.task = {**room.task, "learning_rate": float(room.task["learning_rate"]) * 1e5}
        return job


class NamedTestDodger(Recording):
    """Behaves well only when the project's name says which test runs: in "tls-*" projects the verifier's party is
    sent to a dead address (the probe reads "no message reached the party" as a refusal); in "byz-*" and
    "backdoor-*" projects the verifier's update is replaced by the global model it received (it never counts).
    Everywhere else: the weak platform, which checks no client certificate and averages any update."""

    dead_address = "127.0.0.1:9"
    no_address = False

    def register_party(self, project_id: str, registration: PartyRegistration) -> Party:
        party = super().register_party(project_id, registration)
        if registration.operated_by == "verifier" and self.names[project_id].startswith("tls-"):
            if self.no_address:
                return party.model_copy(update={"connect": None})
            assert party.connect is not None
            return party.model_copy(update={"connect": PartyConnect(
                address=self.dead_address, protocol=party.connect.protocol, server_name="localhost",
                ca_pem=party.connect.ca_pem)})
        return party

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = super().submit_job(project_id, spec)
        if self.names[project_id].startswith(("byz-", "backdoor-")):
            room = self.room(job.job_id)
            post = room.post

            def ignoring_post(what: str, body: dict[str, Any]) -> dict[str, Any]:
                if what == "update":
                    with room.cond:
                        current = list(room.model.get("weights") or [])
                    if current:
                        body = {**body, "weights": current}
                return post(what, body)

            room.post = ignoring_post
        return job


class DpWithoutCapability(Recording):
    """Claims DP at epsilon 1 in /info but leaves "dp" out of its capabilities (and adds no noise)."""

    def info(self) -> PlatformInfo:
        info = super().info()
        return info.model_copy(update={"capabilities": [c for c in info.capabilities if c != "dp"]})


class NoKit(Recording):
    """The weak platform (claims secure aggregation, sends every update in the clear) naming no party kit in /info."""

    def info(self) -> PlatformInfo:
        return super().info().model_copy(update={"party_kit": None})


class DropoutIgnored(Recording):
    """Never simulates a party leaving (the dropout is removed from the job) but reports every round after it
    without that party, as the verifier expects to read."""

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        self.dropouts = getattr(self, "dropouts", {})
        job = super().submit_job(project_id, spec.model_copy(update={"dropout": None}))
        if spec.dropout is not None:
            self.dropouts[job.job_id] = (spec.dropout.party, spec.dropout.after_round)
        return job

    def results(self, job_id: str) -> JobResults:
        results = super().results(job_id)
        gone = getattr(self, "dropouts", {}).get(job_id)
        if gone is None:
            return results
        party, after = gone
        rounds = [r.model_copy(update={"parties": [p for p in r.parties if not (p == party and r.round > after)]})
                  for r in results.rounds]
        return results.model_copy(update={"rounds": rounds})


@contextmanager
def serving(backend: WeakBackend) -> Iterator[str]:
    """``backend`` behind the Benchmark API on 127.0.0.1 (yields the URL); closes both."""
    from sampan.verify.serve_local import serve_app
    from sampan.verify.server import make_benchmark_app

    with backend, serve_app(make_benchmark_app(backend, token=TOKEN)) as server:
        yield server.url


def evaluate(backend: WeakBackend, only: list[str], profile: str = "standard", **kw: Any) -> Any:
    """Run the catalogue's tests ``only`` against ``backend``; returns the Evaluation."""
    from sampan.verify.runner import Target, run_evaluation

    with serving(backend) as url:
        return run_evaluation(Target(url, TOKEN), profile, only=only, data_dir=SHARED, **kw)


def verdicts(evaluation: Any) -> dict[str, tuple[str, str]]:
    return {o.id: (o.verdict, o.message) for o in evaluation.outcomes}
