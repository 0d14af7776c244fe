"""The coordinator agent: serves the parties' streams, accepts runs from operators, runs them, resumes them.

It is the one runner (`sampan.runtime.runner`) with the gRPC transport: a run executes on a worker thread
as `resume_run(store, run_id, transport=<the hub's transport>, cancelled=...)`, through the very workflow
and capability the simulation uses, against the coordinator's own store (SQLite by default, PostgreSQL by
URL), so `sampan runs list/show/report --store <url>` work on it. Nothing here knows a workflow: it waits
for the run's parties, collects every party's signed approval of the job spec (`coordinator_consent`:
recorded at submission, or asked by the parties' standing rules for a `sampan submit`), opens the run at
each (`deploy.open_run` with the job description, the spec and every approval, which each party checks),
hands the run to the runner and closes it at the parties.

Crash safety: every workflow checkpoints (a round, a stage) in one transaction. When a coordinator is
restarted, every deployed run still marked created/running/interrupted is queued again; once its
parties have reconnected it resumes from the last checkpoint (a vertical run from its last completed
stage: the agents keep that run's state in memory across the coordinator's restart). SIGTERM stops the
worker cleanly: the run in progress ends "interrupted" and resumes at the next start.

Terminal states: completed, failed, cancelled (an operator's `sampan runs cancel`: the runner's
`cancelled` callback turns true, the workflow stops at its next check, the parties get `deploy.close_run`).
Closing a completed run at the parties never turns it into failed: a party that disconnects at close is
logged, not held against the run.

Liveness: the hub names a party that disconnects or falls silent within seconds (heartbeats), a request
waiting on it fails naming it, and `sampan runs status` shows each party's state and the parties a
queued run still waits for.

Revocation reaches live connections: a watcher re-reads the CRL and the CA's issuance record every
`crl_check_s` and, when a newer one was loaded since its last pass (by itself or by any connection's
certificate check), re-checks every connected party and cuts the streams that no longer pass; every run
start does the same and refuses to start on a CRL whose nextUpdate has passed. Connections, refusals
(peer address and reason) and revocations go to the signed audit log's ``security`` chain
(`SecurityAudit`, rate-limited per peer). The state folder is 0700, the store, pins file and log 0600.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc

from sampan.config import ConfigError, parse_config
from sampan.core.transport import PartyError
from sampan.core.workflow import RunCancelled
from sampan.deploy.certs import CertificateAuthenticator
from sampan.deploy.config import CoordinatorConfig, RunSpec, parse_run_spec
from sampan.deploy.consent import Approval, JobSpec
from sampan.deploy.coordinator_consent import ConsentCalls
from sampan.deploy.keyfiles import KeyFileError, unencrypted_pem
from sampan.deploy.operator_calls import TERMINAL, OperatorCalls
from sampan.deploy.security_audit import SecurityAudit
from sampan.deploy.wire_tap import TAP_ENV, WireTap, read_tap
from sampan.files import private_directory, private_sqlite
from sampan.runtime.runner import resume_run
from sampan.runtime.seeds import derive_seed
from sampan.runtime.store import Store
from sampan.transport.grpc_hub import AuthenticationError, GrpcTransport, Hub, HubSettings
from sampan.wire import Message

__all__ = ["Coordinator", "TAP_ENV", "read_tap"]

log = logging.getLogger("sampan.deploy.coordinator")
AUTO_RESUME = {"created", "running", "interrupted"}


def _log_progress(run_id: str) -> Any:
    """The runner's progress callback: one log line per round, epoch or stage."""
    def progress(stage: str, info: Mapping[str, Any]) -> None:
        if stage == "round":
            metrics = {k: round(v, 4) for k, v in dict(info.get("global") or {}).items() if isinstance(v, float)}
            log.info("run %s: round %s done in %.2f s %s", run_id, info.get("round"), float(info.get("seconds", 0.0)),
                     metrics)
        elif stage == "epoch":
            log.info("run %s: epoch %s %s", run_id, info.get("epoch"),
                     {k: v for k, v in info.items() if k != "epoch" and isinstance(v, (int, float))})
        elif stage == "stage":
            log.info("run %s: %s", run_id, info.get("stage"))
    return progress


def _with_parties(spec: RunSpec, parties: list[str], run_id: str, report_dir: str | None = None) -> Any:
    """The run config as the workflow reads it: where the parties are is the one thing a deployment says
    differently ([deploy] parties instead of [[parties]] with paths), so name them in [[parties]] too.
    `report_dir`: where the report goes when the stored config names no folder (a job approved through the
    control plane is stored exactly as approved, so the coordinator's folder is added here, not to it)."""
    if spec.config.parties and report_dir is None:
        return spec.config
    data = spec.config.to_dict()
    if not spec.config.parties:
        data["parties"] = [{"name": p} for p in parties]
    if report_dir is not None:
        data["run"] = {**dict(data.get("run") or {}), "report_dir": str(report_dir)}
    return parse_config(data, source=f"stored config of run {run_id}", deployment=True)


class Coordinator(OperatorCalls, ConsentCalls):
    def __init__(self, config: CoordinatorConfig) -> None:
        self.config = config
        c = config.coordinator
        private_directory(c.state_dir)
        private_sqlite(config.store_url)  # SQLite gives its WAL/journal files the database file's mode
        self.store = (
            Store.open(config.store_url, audit_key=c.audit_key) if c.audit_key else Store.open(config.store_url)
        )
        self.security = SecurityAudit(self.store)
        members = {m.name: m.role for m in config.members}
        self.authenticator = CertificateAuthenticator(
            config.tls.ca,
            crl=config.tls.crl,
            members=members,
            issued=config.tls.issued,
            pins={m.name: m.pin for m in config.members if m.pin},
            pins_file=Path(c.state_dir) / "pins.json",
            state=Path(c.state_dir) / "revocation_high_water.json",
        )
        settings = HubSettings(
            name=c.name,
            limits=c.limits(),
            request_timeout_s=c.request_timeout_s,
            rejoin_timeout_s=c.rejoin_timeout_s,
            heartbeat_s=c.heartbeat_s,
            silent_after_s=max(c.silent_after_s, 3 * c.heartbeat_s),
        )
        tap = WireTap(os.environ[TAP_ENV]) if os.environ.get(TAP_ENV) else None
        self.hub = Hub(
            settings,
            self.authenticator,
            members,
            tap=tap,
            on_event=self.security.record,
            control={"Submit": self.submit, "Status": self.status, "Cancel": self.cancel},
        )
        self._revocation_lock = threading.Lock()
        self._acted_generation: object = None  # the CRL/record generation the last revalidation used
        self._stale_crl_reported: object = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._queued: set[str] = set()
        self._cancelled: set[str] = set()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self.waiting: dict[str, list[str]] = {}  # run id -> parties it still waits for
        self.current: str | None = None
        self.serving: set[str] = set()  # serving jobs running beside the queue (`_serve_job`)
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> int:
        tls = self.config.tls
        try:
            credentials = grpc.ssl_server_credentials(
                [(unencrypted_pem(tls.key, what="coordinator's private key"), Path(tls.cert).read_bytes())],
                root_certificates=Path(tls.ca).read_bytes(),
                require_client_auth=True,
            )
        except OSError as exc:
            raise ConfigError(f"coordinator: cannot read TLS files: {exc}") from None
        except KeyFileError as exc:
            raise ConfigError(f"coordinator: {exc}") from None
        self.check_revocations()
        self.port = self.hub.start(self.config.coordinator.listen, credentials)
        log.info(
            "coordinator %s listening on port %d (store %s); members: %s",
            self.config.coordinator.name,
            self.port,
            self.store.engine.url.render_as_string(),
            ", ".join(f"{m.name} ({m.role})" for m in self.config.members),
        )
        self._requeue_unfinished()
        return self.port

    def serve(self, stop: threading.Event) -> None:
        """Run queued runs until `stop` is set; then stop cleanly: the run in progress ends "interrupted"
        (it resumes at the next start) and the hub closes every stream."""
        self._worker = threading.Thread(target=self._work, name="sampan-runs", daemon=True)
        self._worker.start()
        watcher = threading.Thread(target=self._watch_revocations, args=(stop,), name="sampan-crl", daemon=True)
        watcher.start()
        stop.wait()
        self._stopping.set()
        self._queue.put(None)
        self.hub.stop()  # fails every outstanding request: the worker's run ends at once
        self._worker.join(timeout=30)
        self.security.flush()

    # --- revocation ---------------------------------------------------------------------------------
    def _watch_revocations(self, stop: threading.Event) -> None:
        while not stop.wait(self.config.coordinator.crl_check_s):
            try:
                self.check_revocations()
            except Exception as exc:  # noqa: BLE001 - logged and audited; the watcher keeps watching
                log.error("revocation check failed: %s", exc)

    def check_revocations(self, *, force: bool = False) -> list[str]:
        """If the CRL or the issuance record changed since the last revalidation (or `force`): re-check every
        live stream, cut the failing ones, record it. Returns the parties cut.

        "Changed" is the authenticator's load generation compared with the one this watcher last acted on,
        not the return value of `refresh()`: any connection attempt re-reads the files first, and would
        otherwise consume the change so that the revoked member's live stream was never re-checked."""
        with self._revocation_lock:
            try:
                self.authenticator.refresh()
            except AuthenticationError as exc:
                log.error("revocation data unusable (%s): %s", exc.code, exc)
                self.security.record("revocation_data_refused", {"code": exc.code, "reason": str(exc)}, peer="local")
                # (the last good lists stay in force; new connections are refused until the files are fixed)
            generation = self.authenticator.generation
            changed = generation != self._acted_generation
            crl = self.authenticator.crl
            if changed:
                self.security.record(
                    "revocation_data_loaded",
                    {
                        "crl": str(crl.path) if crl.path else None,
                        "revoked_serials": sorted(f"{n:x}" for n in crl.serials),
                        "next_update": crl.next_update.isoformat() if crl.next_update else None,
                    },
                    peer="local",
                )
            try:
                self.authenticator.check_fresh()
            except AuthenticationError as exc:
                if self._stale_crl_reported != crl.generation:
                    self._stale_crl_reported = crl.generation
                    log.error("%s", exc)
                    self.security.record("crl_expired", {"reason": str(exc)}, peer="local")
            if not (changed or force):
                return []
            cut = self.hub.revalidate()
            self._acted_generation = generation
        for name in cut:
            log.warning(
                "party %s: live stream cut (its certificate no longer passes: %s)",
                name,
                self.hub.last_refusal.get(name, "?"),
            )
        return cut

    def _requeue_unfinished(self) -> None:
        """Every deployed run a stopped coordinator left unfinished (any workflow) resumes from its checkpoint."""
        for row in reversed(self.store.list_runs(1000)):
            if row.status not in AUTO_RESUME or "deploy" not in (row.config or {}):
                continue
            log.info(
                "run %s (%s) was %s when the coordinator stopped: queued to resume",
                row.run_id,
                row.workflow,
                row.status,
            )
            self._enqueue(row.run_id)

    def _enqueue(self, run_id: str) -> None:
        if run_id not in self._queued:
            self._queued.add(run_id)
            self._queue.put(run_id)

    # --- running --------------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stopping.is_set():
            run_id = self._queue.get()
            if run_id is None:
                return
            try:
                if run_id in self._cancelled:
                    continue  # cancelled while queued (Cancel marked it)
                if self.store.get_run(run_id).workflow == "serving":  # a standing session: beside the queue
                    self.serving.add(run_id)
                    threading.Thread(target=self._serve_job, args=(run_id,), name=f"sampan-serving-{run_id}",
                                     daemon=True).start()
                    continue
                self.current = run_id
                self.execute(run_id)
            except Exception as exc:  # noqa: BLE001 - recorded in the store; the coordinator keeps serving
                log.error("run %s ended: %s: %s", run_id, type(exc).__name__, exc)
            finally:
                self.current = None
                self._queued.discard(run_id)

    def _serve_job(self, run_id: str) -> None:
        """A serving job (`sampan serve`'s session) stays open as long as the bank's service runs: it runs on its
        own thread so the run queue goes on (its requests share the parties' streams with the runs)."""
        try:
            self.execute(run_id)
        except Exception as exc:  # noqa: BLE001 - recorded in the store; the coordinator keeps serving
            log.error("serving run %s ended: %s: %s", run_id, type(exc).__name__, exc)
        finally:
            self.serving.discard(run_id)

    def execute(self, run_id: str) -> None:
        """Wait for the run's parties, open it at each, run it through the one runner, close it."""
        row = self.store.get_run(run_id)
        transport: GrpcTransport | None = None
        try:
            spec = parse_run_spec(row.config, source=f"stored config of run {run_id}")
            parties = self._parties(spec)
            self.check_revocations(force=True)
            try:
                self.authenticator.check_fresh()
            except AuthenticationError as exc:
                raise ConfigError(f"run {run_id} not started: {exc}") from None
            self._wait_for_parties(run_id, parties)
            consent = self.run_consent(run_id, row.config)  # every party's approval, before any data message
            transport = self.hub.transport(parties)
            self._open(transport, run_id, spec, int(row.seed), consent)
            finished = resume_run(
                self.store,
                run_id,
                _log_progress(run_id),
                transport=transport,
                cancelled=lambda: self.is_cancelled(run_id) or self._stopping.is_set(),
                config=_with_parties(spec, parties, run_id, None if (row.config.get("run") or {}).get("report_dir")
                                     else str(self.config.coordinator.report_dir)),
            )
            model = f", model {finished.model_name} v{finished.model_version}" if finished.model_name else ""
            log.info(
                "run %s completed%s: %s",
                run_id,
                model,
                {k: round(v, 4) for k, v in finished.final_metrics.items() if isinstance(v, float)},
            )
            self._close(transport, run_id)
        except RunCancelled:
            if self._stopping.is_set() and not self.is_cancelled(run_id):
                self._interrupted(run_id)
                return
            log.warning("run %s cancelled", run_id)
            if transport is not None:
                self._close(transport, run_id)
        except Exception as exc:
            if self._stopping.is_set():
                self._interrupted(run_id)
                return
            if self.store.get_run(run_id).status not in TERMINAL:  # (the runner records its own failures)
                self.store.set_status(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.hub.set_preamble(run_id, None)
            self.waiting.pop(run_id, None)

    def _interrupted(self, run_id: str) -> None:
        self.store.set_status(run_id, "interrupted", error="coordinator stopped; it resumes on restart")
        log.info("run %s interrupted by the coordinator's stop; it resumes at the next start", run_id)

    def _wait_for_parties(self, run_id: str, parties: list[str]) -> None:
        """Until every party of the run is connected, naming the missing ones every few seconds (log, status)."""
        timeout = self.config.coordinator.connect_timeout_s
        deadline = time.monotonic() + timeout
        while True:
            missing = self.hub.wait_for(parties, min(5.0, max(0.0, deadline - time.monotonic())))
            self.waiting[run_id] = missing
            if not missing:
                return
            if self.is_cancelled(run_id) or self._stopping.is_set():
                raise RunCancelled(f"run {run_id} cancelled while waiting for {missing}")
            if time.monotonic() >= deadline:
                why = "; ".join(
                    f"{p}: last refused ({self.hub.last_refusal[p]})" for p in missing if p in self.hub.last_refusal
                )
                raise ConnectionError(
                    f"parties {missing} did not connect within {timeout:.0f} s" + (f" — {why}" if why else "")
                )
            log.warning(
                "run %s waits for %s (not connected; gives up in %.0f s)",
                run_id,
                ", ".join(missing),
                deadline - time.monotonic(),
            )

    def _open(self, transport: GrpcTransport, run_id: str, spec: RunSpec, seed: int,
              consent: tuple[JobSpec, list[Approval]]) -> None:
        """Tell every party which workflow and dataset, with the job it checks, the approved spec and every
        party's approval (each party verifies them all); re-sent to a party that reconnects mid-run."""
        job_spec, approvals = consent
        job = job_spec.job
        signed = [a.model_dump(mode="json") for a in approvals]
        data = getattr(spec.config, "data", None)
        test_fraction = getattr(data, "test_fraction", None)

        def opening(party: str) -> Message | None:
            if party not in transport.parties:
                return None
            return Message(
                run_id,
                0,
                self.config.coordinator.name,
                party,
                "deploy.open_run",
                meta={
                    "workflow": spec.workflow,
                    "dataset": spec.deploy.dataset,
                    "test_fraction": test_fraction,
                    "split_seed": derive_seed(seed, "split", party),
                    "job": job,
                    "spec": job_spec.model_dump(mode="json"),
                    "approvals": signed,
                },
            )

        self.hub.set_preamble(run_id, opening)
        for _ in transport.exchange(m for m in map(opening, transport.parties) if m is not None):
            pass

    def _close(self, transport: GrpcTransport, run_id: str) -> None:
        """The run is over (completed or cancelled): parties drop its state. A party that is gone or fails here
        is logged; it cannot change the run's recorded end."""
        connected = set(self.hub.connected())
        parties = [p for p in transport.parties if p in connected]
        gone = sorted(set(transport.parties) - connected)
        if gone:
            log.warning(
                "run %s: %s not connected at close; they drop the run when they next restart", run_id, ", ".join(gone)
            )
        try:
            for _ in transport.exchange(
                Message(run_id, 0, self.config.coordinator.name, p, "deploy.close_run") for p in parties
            ):
                pass
        except (PartyError, RuntimeError) as exc:
            log.warning(
                "run %s: closing it at the parties: %s (the run stays %s)",
                run_id,
                exc,
                self.store.get_run(run_id).status,
            )
