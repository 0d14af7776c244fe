"""Sampan as the reference implementation of Benchmark API v1 (`sampan.verify.backend.PlatformBackend`).

Every call runs Sampan's real machinery, never a mock: a project is a private folder (mode 0700) with its own SQLite
run store and audit key; a job (`bench_jobs.JobRun`) writes the parties' rows as their tables, builds the RunConfig
`sampan run` would read, and trains through the one runner in a background thread; results come from that store
(per-round AUC from the coordinator's recorded evaluations, epsilon spent per party from the run's privacy ledger,
the signed audit chain), the model export from the registered model, evaluate and predict from sampan's `Predictor`.

Two modes. In-process (the default): verifier-operated parties run in this process (see
`sampan.verify.platforms.sampan_kit`), `Party.connect` is None because there is no network data plane, so wire bytes
are not measurable and the claims say so (mtls False). Deployed (``issuer=`` the verifier's consortium CA, for a
project whose ``ca_pem`` is that CA): every job runs on a real Sampan deployment, the deploy coordinator and party
agents over gRPC with mutual TLS (`sampan.web.bench_deployed`), the verifier's party is a party agent the verifier
runs, dialling `Party.connect`, and /info claims mtls. Mount it on any FastAPI app with `mount_bench_api`.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, get_args

import numpy as np

from sampan.runtime.store import Store
from sampan.verify.api import (
    ApiError,
    Capability,
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
    Standardisation,
    TableData,
    TaskSpec,
)
from sampan.verify.backend import BackendError
from sampan.verify.platforms.sampan_kit import PROTOCOL, seat
from sampan.web.bench_config import check_aggregator
from sampan.web.bench_deployed import DeployedSite, pin_of, run_deployed
from sampan.web.bench_jobs import JobRun, PartyEntry, audit_entries, round_aucs

__all__ = ["SampanBackend", "mount_bench_api"]

CAPABILITIES = ["horizontal", "vertical", "psi", "secure_aggregation", "dp", "model_export", "evaluate", "predict",
                "dropout", "audit_log"]
if "robust_aggregation" in get_args(Capability):  # the API version that carries TaskSpec.aggregator
    CAPABILITIES.append("robust_aggregation")  # median, trimmed mean, Krum: `bench_config` says when


# What a job with `dp` set gets: record-level (epsilon, delta)-DP per party for the released model (DP3: clipped
# updates, Gaussian noise at the aggregator, charged to the run's ledger). The verifier sets its DP jobs from this
# claim; the value is the one Sampan's docs use for a DP run, and a job may ask for any other.
DEFAULT_DP_CLAIM = DPClaim(epsilon=1.0, delta=1e-5, level="record")


class _Project:
    def __init__(self, project_id: str, name: str, folder: Path, site: DeployedSite | None = None) -> None:
        self.project_id, self.name, self.folder, self.site = project_id, name, folder, site
        self.store = Store.open(f"sqlite:///{folder / 'runs.db'}", audit_key=folder / "audit.key")
        self.parties: dict[str, PartyEntry] = {}


class SampanBackend:
    """Sampan behind the Benchmark API; ``root`` holds the projects' private folders (default: a temp folder);
    ``dp_claim``: the DP guarantee /info states for a job with `dp` set (None: claim none); ``issuer``: the
    verifier's consortium CA (`sampan.verify.pki.VerifierCA`): projects created with its ``ca_pem`` run deployed."""

    def __init__(self, root: str | Path | None = None, *, dp_claim: DPClaim | None = DEFAULT_DP_CLAIM,
                 issuer: Any = None) -> None:
        self.issuer = issuer
        self._owned = root is None
        self._root = Path(root) if root is not None else None  # None: a temp folder, made at the first project
        self.dp_claim = dp_claim
        self._projects: dict[str, _Project] = {}
        self._jobs: dict[str, JobRun] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        """The folder holding the projects' private folders."""
        with self._lock:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="sampan-bench-"))
            return self._root

    # --- /info --------------------------------------------------------------------------------------
    def info(self) -> PlatformInfo:
        from sampan import __version__

        deployed = self.issuer is not None
        capabilities = [*CAPABILITIES, *(["mtls"] if deployed else [])]
        return PlatformInfo(platform="sampan", platform_version=str(__version__), capabilities=capabilities,  # type: ignore[arg-type]
                            claims=Claims(secure_aggregation=True, dp=self.dp_claim, mtls=deployed, psi=True,
                                          audit_log=True),
                            party_kit="sampan")

    # --- projects and parties ------------------------------------------------------------------------
    def create_project(self, spec: ProjectCreate) -> Project:
        site = None
        if self.issuer is not None and spec.ca_pem is not None:
            if spec.ca_pem.strip() != str(self.issuer.ca_pem).strip():
                raise BackendError("invalid", "ca_pem is not the consortium CA this Sampan deployment was set up "
                                   "with (its coordinator and agents hold certificates from that CA only)", "ca_pem")
            from sampan.deploy.local import free_port

            site = DeployedSite(self.issuer, free_port())
        project_id = f"p-{uuid.uuid4().hex[:16]}"
        folder = self.root / project_id
        self.root.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
        with self._lock:
            self._projects[project_id] = _Project(project_id, spec.name, folder, site)
        return Project(project_id=project_id, name=spec.name)

    def register_party(self, project_id: str, registration: PartyRegistration) -> Party:
        project = self._project(project_id)
        pin, connect = None, None
        if project.site is not None and registration.operated_by == "verifier":
            if not registration.certificate_pem:
                raise BackendError("invalid", f"party {registration.name!r}: a verifier-operated party of a deployed "
                                   "project registers with certificate_pem (from the consortium CA)", "certificate_pem")
            pin = pin_of(registration.certificate_pem, registration.name, str(project.site.issuer.ca_pem))
            connect = PartyConnect(address=project.site.address, protocol=PROTOCOL, server_name="localhost",
                                   ca_pem=str(project.site.issuer.ca_pem))
        with self._lock:
            if registration.name in project.parties:
                raise BackendError("conflict", f"party {registration.name!r} is already registered", "name")
            project.parties[registration.name] = PartyEntry(registration.name, registration.role,
                                                            registration.operated_by, registration.data, pin)
        return Party(name=registration.name, role=registration.role, operated_by=registration.operated_by,
                     connect=connect)

    # --- jobs -------------------------------------------------------------------------------------
    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        project = self._project(project_id)
        unknown = [p for p in spec.features if p not in project.parties]
        if unknown:
            raise BackendError("invalid", f"parties {unknown} are not registered in project {project_id!r}",
                               "features")
        _check_shape(spec)
        job = JobRun(job_id=f"j-{uuid.uuid4().hex[:16]}", project_id=project_id, spec=spec)
        parties = dict(project.parties)
        if project.site is not None:
            if spec.kind != "horizontal":
                raise BackendError("unsupported", "a deployed benchmark project runs horizontal jobs only (create the "
                                   "project without ca_pem for an in-process vertical job)", "kind")
            thread = threading.Thread(target=run_deployed, name=f"bench-{job.job_id}", daemon=True,
                                      args=(job, project.folder, project.site, parties))
        else:
            thread = threading.Thread(
                target=job.execute, name=f"bench-{job.job_id}", daemon=True,
                args=(project.folder, project.store, parties, lambda party: seat(job.job_id, party)))
        with self._lock:
            self._jobs[job.job_id] = job
            self._threads[job.job_id] = thread
        thread.start()
        return self.job(job.job_id)

    def job(self, job_id: str) -> Job:
        run = self._job(job_id)
        with run.lock:
            error = ApiError(code=run.error[0], message=run.error[1], field=run.error[2]) if run.error else None  # type: ignore[arg-type]
            return Job(job_id=run.job_id, project_id=run.project_id, state=run.state, round=run.round,  # type: ignore[arg-type]
                       rounds=run.spec.rounds, error=error, created_at=run.created_at, started_at=run.started_at,
                       finished_at=run.finished_at)

    def cancel(self, job_id: str) -> Job:
        run = self._job(job_id)
        run.cancel.set()
        return self.job(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job's thread ends (tests and the local launcher)."""
        self._threads[job_id].join(timeout)
        return self.job(job_id)

    def results(self, job_id: str) -> JobResults:
        run, finished = self._succeeded(job_id)
        store = run.store or self._projects[run.project_id].store
        aucs = round_aucs(store, finished.run_id)
        metrics = {k: float(v) for k, v in finished.final_metrics.items()
                   if isinstance(v, (int, float)) and np.isfinite(v)}
        with run.lock:
            rounds = [r.model_copy(update={"auc": r.auc if r.auc is not None else aucs.get(r.round)})
                      for r in run.rounds]
        if run.intersection is not None:
            metrics["intersection_size"] = float(run.intersection)
        if rounds and rounds[-1].auc is None and "auc" in metrics and run.spec.kind == "horizontal":
            rounds[-1] = rounds[-1].model_copy(update={"auc": metrics["auc"]})
        return JobResults(job_id=job_id, rounds=rounds, metrics=metrics,
                          epsilon_spent=_epsilon_spent(store, finished.run_id),
                          audit_log=audit_entries(store, finished.run_id))

    def model(self, job_id: str) -> ModelExport:
        run, finished = self._succeeded(job_id)
        store = run.store or self._projects[run.project_id].store
        if run.spec.kind == "horizontal":
            return _horizontal_export(store, finished)
        return _vertical_export(store, finished.run_id, run.spec)

    def evaluate(self, job_id: str, data: TableData) -> EvaluateResult:
        run, _ = self._succeeded(job_id)
        label = run.spec.label
        try:
            y = np.array([float(v) for v in data.column(label)])  # type: ignore[arg-type]
        except KeyError as exc:
            raise BackendError("invalid", str(exc.args[0]), "columns") from None
        except (TypeError, ValueError):
            raise BackendError("invalid", f"label column {label!r} must hold numbers 0/1", "rows") from None
        if not np.isin(y, (0.0, 1.0)).all():
            raise BackendError("invalid", f"label column {label!r} must hold only 0 and 1", "rows")
        p = np.clip(self._scores(job_id, data), 1e-12, 1 - 1e-12)
        from sampan.metrics.classification import log_loss, roc_auc

        auc = roc_auc(y.astype(int), p) if 0 < y.sum() < len(y) else None
        return EvaluateResult(metrics=EvaluateMetrics(auc=auc, logloss=log_loss(y.astype(int), p),
                                                      accuracy=float(np.mean((p >= 0.5) == (y == 1)))),
                              rows=len(y))

    def predict(self, job_id: str, data: TableData) -> PredictResult:
        return PredictResult(scores=[float(s) for s in self._scores(job_id, data)])

    def close(self) -> None:
        """Cancel running jobs, wait for them, close the stores and remove a temp root this backend made."""
        for run in list(self._jobs.values()):
            run.cancel.set()
        for thread in list(self._threads.values()):
            thread.join(30)
        for project in self._projects.values():
            project.store.close()
            for store in project.site.stores if project.site is not None else ():
                store.close()
        if self._owned and self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)

    # --- helpers ------------------------------------------------------------------------------------
    def _scores(self, job_id: str, data: TableData) -> np.ndarray:
        run, finished = self._succeeded(job_id)
        store = run.store or self._projects[run.project_id].store
        if run.spec.kind == "horizontal":
            from sampan.errors import SampanError
            from sampan.models.predictor import Predictor

            model = store.get_model(str(finished.model_name), finished.model_version)
            predictor = Predictor.from_registered(model.arrays, model.meta, name=model.name, version=model.version)
            try:
                frame = {c: _numbers(data, c) for c in predictor.columns if c in data.columns}
                return np.asarray(predictor.predict_proba(frame))[:, 1]
            except SampanError as exc:
                raise BackendError("invalid", str(exc), "columns") from None
        export = _vertical_export(store, finished.run_id, run.spec)
        columns = [f.split(":", 1)[1] for f in export.features]
        missing = [c for c in columns if c not in data.columns]
        if missing:
            raise BackendError("invalid", f"the table has no column(s) {', '.join(map(repr, missing))}", "columns")
        X = np.column_stack([_numbers(data, c) for c in columns]) if columns else np.zeros((len(data.rows), 0))
        assert export.standardisation is not None
        Z = (X - np.asarray(export.standardisation.mean)) / np.asarray(export.standardisation.scale)
        return np.asarray(1.0 / (1.0 + np.exp(-(Z @ np.asarray(export.coefficients) + export.intercept))))

    def _project(self, project_id: str) -> _Project:
        project = self._projects.get(project_id)
        if project is None:
            raise BackendError("not_found", f"no project {project_id!r}", "project_id")
        return project

    def _job(self, job_id: str) -> JobRun:
        run = self._jobs.get(job_id)
        if run is None:
            raise BackendError("not_found", f"no job {job_id!r}", "job_id")
        return run

    def _succeeded(self, job_id: str) -> tuple[JobRun, Any]:
        run = self._job(job_id)
        with run.lock:
            if run.state != "succeeded" or run.finished is None:
                raise BackendError("conflict", f"job {job_id!r} is {run.state}; results exist once it succeeded")
            return run, run.finished


def _check_shape(spec: TaskSpec) -> None:
    """Refuse, before any thread starts, what Sampan's protocols cannot run (with the reason)."""
    check_aggregator(spec)
    n = len(spec.features)
    if spec.kind == "horizontal" and spec.secure_aggregation and n - (spec.dropout is not None) < 3:
        raise BackendError("unsupported", f"secure aggregation needs at least 3 contributing parties in every round "
                           f"(with two, each reads the other's update from the sum); this job has {n}"
                           + (" and one drops out" if spec.dropout else ""), "secure_aggregation")
    if spec.kind == "horizontal" and spec.dropout is not None and not spec.secure_aggregation:
        raise BackendError("unsupported", "Sampan absorbs a party leaving mid-run only under secure aggregation "
                           "(SecAgg+ rounds continue with the survivors); a plain FedAvg round fails when a party "
                           "stops answering", "dropout")
    if spec.kind == "vertical" and spec.dropout is not None:
        raise BackendError("unsupported", "vertical: a party leaving mid-training ends a secure vertical LR run "
                           "(every party holds a share of the weights)", "dropout")


def _numbers(data: TableData, column: str) -> np.ndarray:
    try:
        return np.array([np.nan if v is None else float(v) for v in data.column(column)], dtype=np.float64)
    except (TypeError, ValueError):
        raise BackendError("invalid", f"column {column!r} must hold numbers", "rows") from None


def _epsilon_spent(store: Store, run_id: str) -> dict[str, float] | None:
    text = store.ledger(run_id)
    if not text:
        return None
    from sampan.privacy import Ledger

    ledger = Ledger.from_json(text)
    return {party: float(ledger.spent(party)) for party in ledger.parties}


def _horizontal_export(store: Store, finished: Any) -> ModelExport:
    model = store.get_model(str(finished.model_name), finished.model_version)
    params = np.asarray(model.arrays["params"], dtype=np.float64)
    names = [str(n) for n in model.meta["feature_names"]]
    scale = None
    if "scaler.mean" in model.arrays:
        scale = Standardisation(mean=[float(v) for v in model.arrays["scaler.mean"]],
                                scale=[float(v) for v in model.arrays["scaler.scale"]])
    return ModelExport(features=names, coefficients=[float(v) for v in params[:-1]], intercept=float(params[-1]),
                       standardisation=scale)


def _vertical_export(store: Store, run_id: str, spec: TaskSpec) -> ModelExport:
    """The parties' model parts joined: in a simulation every part sits in the run's store (a deployment keeps
    each at its party, so this export exists only here, for the verifier)."""
    parts = {str(m.meta.get("party")): m for m in store.models_for_run(run_id) if "weights" in m.arrays}
    features: list[str] = []
    coefficients: list[float] = []
    mean: list[float] = []
    scale: list[float] = []
    intercept = 0.0
    for party in spec.features:
        part = parts.get(party)
        if part is None:
            raise BackendError("internal", f"no model part of party {party!r} was registered")
        features += [f"{party}:{c}" for c in part.meta["feature_names"]]
        coefficients += [float(v) for v in part.arrays["weights"]]
        mean += [float(v) for v in part.arrays["mean"]]
        scale += [float(v) for v in part.arrays["scale"]]
        intercept += float(part.meta.get("intercept") or 0.0)
    return ModelExport(features=features, coefficients=coefficients, intercept=intercept,
                       standardisation=Standardisation(mean=mean, scale=scale))


def mount_bench_api(token: str, backend: SampanBackend | None = None) -> Any:
    """A control-plane mount (`AppSettings.mounts` entry: ``mount(app, plane)``) serving Sampan's backend at
    /bench/v1 behind its own bearer ``token``."""
    from sampan.verify.api import BASE_PATH
    from sampan.verify.server import make_benchmark_app

    def mount(app: Any, plane: Any) -> None:
        app.mount(BASE_PATH, make_benchmark_app(backend or SampanBackend(), token=token, prefix=""))

    return mount
