"""The coordinator agent: serves the parties' streams, accepts runs from operators, runs them, resumes them.

Runs execute one at a time on a worker thread with `GrpcTransport`, through the very workflows the
simulation uses (`HorizontalWorkflow`, `VerticalSession`), against the coordinator's own store
(SQLite by default, PostgreSQL by URL), so `sampan runs list/show/report --store <url>` work on it.

Crash safety: a horizontal run checkpoints every round in one transaction. When a coordinator is
restarted, every deployed run still marked created/running/interrupted is queued again; once its
parties have reconnected it resumes from the last checkpoint and ends with the model an
uninterrupted run would have produced. (A vertical run keeps its secret state in the parties'
memory: it is marked failed and can be submitted again.)

Revocation reaches live connections: a watcher re-reads the CRL and the CA's issuance record every
`crl_check_s` and, when a newer one was loaded since its last pass (by itself or by any connection's
certificate check), re-checks every connected party and cuts the streams that no longer pass; every run start does the same and refuses to start on a CRL whose nextUpdate has passed.
Connections, refusals (peer address and reason) and revocations go to the signed audit log's
``security`` chain (`SecurityAudit`, rate-limited per peer). The state folder is 0700, the store, pins
file and log 0600.
"""

from __future__ import annotations

import logging
import os
import queue
import struct
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from sampan.config import ConfigError
from sampan.deploy.certs import CertificateAuthenticator
from sampan.deploy.allow import job_description
from sampan.deploy.config import CoordinatorConfig, RunSpec, parse_run_spec
from sampan.deploy.keyfiles import KeyFileError, unencrypted_pem
from sampan.deploy.security_audit import SecurityAudit
from sampan.files import private_directory, private_sqlite
from sampan.runtime.progress import RoundResult
from sampan.runtime.runner import RESUMABLE, resume_run
from sampan.runtime.seeds import derive_seed, fresh_seed
from sampan.runtime.store import Store, StoreError
from sampan.transport.grpc_hub import AuthenticationError, GrpcTransport, Hub, HubSettings, Identity
from sampan.wire import Message

__all__ = ["Coordinator", "TAP_ENV", "read_tap"]

log = logging.getLogger("sampan.deploy.coordinator")
TAP_ENV = "SAMPAN_WIRE_TAP"  # tests/benchmarks: append every frame the coordinator sends/receives to this file
AUTO_RESUME = {"created", "running", "interrupted"}


class _LogProgress:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.total = 0

    def run_started(self, run_id: str, total_rounds: int, resumed_from: int) -> None:
        self.total = total_rounds
        log.info("run %s: %s at round %d of %d", run_id, "resumed" if resumed_from else "started", resumed_from,
                 total_rounds)

    def round_started(self, round_number: int, n_parties: int) -> None:
        pass

    def party_done(self, party: str) -> None:
        pass

    def round_finished(self, result: RoundResult) -> None:
        auc = result.global_metrics.get("auc")
        log.info("run %s: round %d/%d done in %.2f s, train loss %.4f%s", self.run_id, result.round, self.total,
                 result.seconds, result.train_loss, f", AUC {auc:.4f}" if auc is not None else "")


class _Tap:
    """Appends (party, direction, frame) records; only for tests that inspect what crossed the wire."""

    def __init__(self, path: str) -> None:
        self._fh = open(path, "ab")
        self._lock = threading.Lock()

    def __call__(self, party: str, direction: str, frame: bytes) -> None:
        name = party.encode()
        with self._lock:
            self._fh.write(struct.pack("<H", len(name)) + name + (b"\x00" if direction == "to_party" else b"\x01")
                           + struct.pack("<I", len(frame)) + frame)
            self._fh.flush()


def read_tap(path: str | Path) -> list[tuple[str, str, bytes]]:
    data = Path(path).read_bytes()
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from("<H", data, i)
        party = data[i + 2:i + 2 + n].decode()
        i += 2 + n
        direction = "to_party" if data[i] == 0 else "from_party"
        (size,) = struct.unpack_from("<I", data, i + 1)
        out.append((party, direction, data[i + 5:i + 5 + size]))
        i += 5 + size
    return out


class Coordinator:
    def __init__(self, config: CoordinatorConfig) -> None:
        self.config = config
        c = config.coordinator
        private_directory(c.state_dir)
        private_sqlite(config.store_url)  # SQLite gives its WAL/journal files the database file's mode
        self.store = Store.open(config.store_url, audit_key=c.audit_key) if c.audit_key else Store.open(config.store_url)
        self.security = SecurityAudit(self.store)
        members = {m.name: m.role for m in config.members}
        self.authenticator = CertificateAuthenticator(
            config.tls.ca, crl=config.tls.crl, members=members, issued=config.tls.issued,
            pins={m.name: m.pin for m in config.members if m.pin}, pins_file=Path(c.state_dir) / "pins.json",
            state=Path(c.state_dir) / "revocation_high_water.json")
        settings = HubSettings(name=c.name, limits=c.limits(), request_timeout_s=c.request_timeout_s,
                               rejoin_timeout_s=c.rejoin_timeout_s)
        tap = _Tap(os.environ[TAP_ENV]) if os.environ.get(TAP_ENV) else None
        self.hub = Hub(settings, self.authenticator, members, control={"Submit": self.submit, "Status": self.status},
                       tap=tap, on_event=self.security.record)
        self._revocation_lock = threading.Lock()
        self._acted_generation: object = None  # the CRL/record generation the last revalidation used
        self._stale_crl_reported: object = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._queued: set[str] = set()
        self.current: str | None = None
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> int:
        tls = self.config.tls
        try:
            credentials = grpc.ssl_server_credentials(
                [(unencrypted_pem(tls.key, what="coordinator's private key"), Path(tls.cert).read_bytes())],
                root_certificates=Path(tls.ca).read_bytes(), require_client_auth=True)
        except OSError as exc:
            raise ConfigError(f"coordinator: cannot read TLS files: {exc}") from None
        except KeyFileError as exc:
            raise ConfigError(f"coordinator: {exc}") from None
        self.check_revocations()
        self.port = self.hub.start(self.config.coordinator.listen, credentials)
        log.info("coordinator %s listening on port %d (store %s); members: %s", self.config.coordinator.name,
                 self.port, self.store.engine.url.render_as_string(),
                 ", ".join(f"{m.name} ({m.role})" for m in self.config.members))
        self._requeue_unfinished()
        return self.port

    def serve(self, stop: threading.Event) -> None:
        """Run queued runs until `stop` is set."""
        worker = threading.Thread(target=self._work, name="sampan-runs", daemon=True)
        worker.start()
        watcher = threading.Thread(target=self._watch_revocations, args=(stop,), name="sampan-crl", daemon=True)
        watcher.start()
        stop.wait()
        self._queue.put(None)
        if self.current is not None:
            self.store.set_status(self.current, "interrupted", error="coordinator stopped; it resumes on restart")
        self.hub.stop()
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
                self.security.record("revocation_data_loaded", {
                    "crl": str(crl.path) if crl.path else None, "revoked_serials": sorted(f"{n:x}" for n in crl.serials),
                    "next_update": crl.next_update.isoformat() if crl.next_update else None}, peer="local")
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
            log.warning("party %s: live stream cut (its certificate no longer passes: %s)", name,
                        self.hub.last_refusal.get(name, "?"))
        return cut

    def _requeue_unfinished(self) -> None:
        for row in reversed(self.store.list_runs(1000)):
            if row.status not in AUTO_RESUME or "deploy" not in (row.config or {}):
                continue
            if (row.config.get("deploy") or {}).get("workflow") == "vertical":
                self.store.set_status(row.run_id, "failed", error="the coordinator restarted during a vertical run; "
                                      "vertical state lives in the parties' memory: submit it again")
                continue
            log.info("run %s was %s when the coordinator stopped: queued to resume", row.run_id, row.status)
            self._enqueue(row.run_id)

    def _enqueue(self, run_id: str) -> None:
        if run_id not in self._queued:
            self._queued.add(run_id)
            self._queue.put(run_id)

    # --- operator calls -----------------------------------------------------------------------------
    def submit(self, identity: Identity, message: Message) -> Message:
        resume = message.meta.get("resume")
        if resume:
            row = self.store.get_run(str(resume))
            if row.status not in RESUMABLE or "deploy" not in (row.config or {}):
                raise StoreError(f"run {resume!r} is {row.status}; only deployed runs in {sorted(RESUMABLE)} resume")
            self.store.log_event(row.run_id, "resume_requested", {"by": identity.name})
            self._enqueue(row.run_id)
            return message.reply("deploy.submitted", meta={"run_id": row.run_id, "resumed": True})
        data = dict(message.meta.get("config") or {})
        run_section = dict(data.get("run") or {})
        run_section.pop("store", None)
        run_section["report_dir"] = str(self.config.coordinator.report_dir)
        data["run"] = run_section
        data["deploy"] = {**dict(data.get("deploy") or {}), "submitted_by": identity.name}  # parties check it
        spec = parse_run_spec(data, source=f"run submitted by {identity.name}")
        parties = self._parties(spec)
        seed = spec.config.run.seed if spec.config.run.seed is not None else fresh_seed()
        total = spec.vertical.epochs if spec.vertical is not None else spec.config.run.rounds
        run_id = self.store.create_run(name=spec.config.run.name, workflow=spec.deploy.workflow, seed=seed,
                                       config=spec.stored, total_rounds=total)
        self.store.log_event(run_id, "submitted", {"by": identity.name, "parties": parties})
        log.info("run %s (%s, %s) submitted by %s for %s", run_id, spec.config.run.name, spec.deploy.workflow,
                 identity.name, ", ".join(parties))
        self._enqueue(run_id)
        return message.reply("deploy.submitted", meta={"run_id": run_id, "resumed": False})

    def status(self, identity: Identity, message: Message) -> Message:
        row = self.store.get_run(str(message.meta.get("run_id")))
        info = row.info or {}
        return message.reply("deploy.status", meta={
            "run_id": row.run_id, "name": row.name, "workflow": row.workflow, "status": row.status,
            "round": row.current_round, "total_rounds": row.total_rounds, "error": row.error,
            "final_metrics": info.get("final_metrics"), "model": info.get("model"),
            "connected": self.hub.connected()})

    def _parties(self, spec: RunSpec) -> list[str]:
        members = self.hub.party_names
        parties = list(spec.deploy.parties) if spec.deploy.parties else list(members)
        unknown = [p for p in parties if p not in members]
        if unknown:
            raise ConfigError(f"parties {unknown} are not members of this federation ({members})")
        if spec.deploy.label_holder and spec.deploy.label_holder not in parties:
            raise ConfigError(f"label holder {spec.deploy.label_holder!r} is not among the run's parties {parties}")
        return parties

    # --- running --------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            run_id = self._queue.get()
            if run_id is None:
                return
            self.current = run_id
            try:
                self.execute(run_id)
            except Exception as exc:  # noqa: BLE001 - recorded in the store; the coordinator keeps serving
                log.error("run %s failed: %s: %s", run_id, type(exc).__name__, exc)
            finally:
                self.current = None
                self._queued.discard(run_id)

    def execute(self, run_id: str) -> None:
        row = self.store.get_run(run_id)
        try:
            spec = parse_run_spec(row.config, source=f"stored config of run {run_id}")
            parties = self._parties(spec)
            seed = int(row.seed)
            self.check_revocations(force=True)
            try:
                self.authenticator.check_fresh()
            except AuthenticationError as exc:
                raise ConfigError(f"run {run_id} not started: {exc}") from None
            missing = self.hub.wait_for(parties, self.config.coordinator.connect_timeout_s)
            if missing:
                why = "; ".join(f"{p}: last refused ({self.hub.last_refusal[p]})" for p in missing
                                if p in self.hub.last_refusal)
                raise ConnectionError(f"parties {missing} did not connect within "
                                      f"{self.config.coordinator.connect_timeout_s:.0f} s" + (f" — {why}" if why else ""))
            transport = self.hub.transport(parties)
            self._open(transport, run_id, spec, seed)
            if spec.deploy.workflow == "horizontal":
                finished = resume_run(self.store, run_id, _LogProgress(run_id), transport=transport,
                                      config=spec.config)  # the one runner, with this hub's transport
                log.info("run %s completed: %s v%s, %s", run_id, finished.model_name, finished.model_version,
                         {k: round(v, 4) for k, v in finished.final_metrics.items() if isinstance(v, float)})
                self._close(transport, run_id, None)
            else:
                self._vertical(transport, run_id, spec, seed)
        except Exception as exc:
            self.store.set_status(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.hub.set_preamble(run_id, None)

    def _open(self, transport: GrpcTransport, run_id: str, spec: RunSpec, seed: int) -> None:
        """Tell every party which workflow and dataset; re-sent to a party that reconnects mid-run."""
        def opening(party: str) -> Message | None:
            if party not in transport.parties:
                return None
            return Message(run_id, 0, self.config.coordinator.name, party, "deploy.open_run", meta={
                "workflow": spec.deploy.workflow, "dataset": spec.deploy.dataset,
                "test_fraction": spec.config.data.test_fraction, "split_seed": derive_seed(seed, "split", party),
                "job": job})

        job = job_description(spec.stored, workflow=spec.deploy.workflow, operator=spec.deploy.submitted_by,
                              parties=transport.parties, label_holder=spec.deploy.label_holder)

        self.hub.set_preamble(run_id, opening)
        for _ in transport.exchange(m for m in map(opening, transport.parties) if m is not None):
            pass

    def _close(self, transport: GrpcTransport, run_id: str, save_model: str | None) -> None:
        messages = (Message(run_id, 0, self.config.coordinator.name, p, "deploy.close_run",
                            meta={"save_model": save_model} if save_model else {}) for p in transport.parties)
        for _ in transport.exchange(messages):
            pass

    def _vertical(self, transport: GrpcTransport, run_id: str, spec: RunSpec, seed: int) -> None:
        from sampan.vertical.run import TRAINING_REVEALS
        from sampan.vertical.session import VerticalSession
        from sampan.vertical.training import VerticalLRConfig

        v = spec.vertical
        assert v is not None and spec.deploy.label_holder is not None
        label_holder = spec.deploy.label_holder
        partners = [p for p in transport.parties if p != label_holder]
        self.store.set_status(run_id, "running")
        session = VerticalSession(transport, label_holder=label_holder, partners=partners, run_id=run_id)
        started = time.perf_counter()
        session.connect()
        alignment = session.align()
        align_info = {"n_aligned": int(alignment.n_aligned), "sizes": dict(alignment.sizes),
                      "pairwise": dict(alignment.cardinalities), "seconds": float(alignment.seconds)}
        self.store.log_event(run_id, "aligned", align_info)
        log.info("run %s: %d customers aligned by PSI in %.1f s", run_id, session.n_aligned, alignment.seconds)
        # the parties pin one train/validation/test partition of their customers per dataset across runs
        splits = session.splits(test_fraction=v.test_fraction, val_fraction=v.val_fraction, seed=seed)

        def on_epoch(stage: str, info: Any) -> None:
            if stage == "epoch":
                self.store.save_round(run_id, int(info["epoch"]), state_arrays={}, state_meta={},
                                      metrics={"global": {"val_brier": info["val_brier"]}}, seconds=info["seconds"])
                log.info("run %s: epoch %d, validation Brier %.5f", run_id, info["epoch"], info["val_brier"])

        session.progress = on_epoch
        config = VerticalLRConfig(epochs=v.epochs, batch_size=v.batch_size, learning_rate=v.learning_rate, l2=v.l2,
                                  patience=v.patience, min_delta=v.min_delta)
        result = session.train(splits, config, seed=seed)
        joint = session.evaluate(splits.test)
        self._close(transport, run_id, spec.config.run.name)
        parties = {p: {"n_train": len(splits.train), "n_test": len(splits.test), "positive_rate": None}
                   for p in transport.parties}
        self.store.record_info(run_id, "parties", parties)
        self.store.record_info(run_id, "final_metrics", {k: joint[k] for k in ("auc", "ks", "brier") if k in joint})
        self.store.record_info(run_id, "vertical", {
            "alignment": {**align_info, "reveals": str(alignment.reveals)}, "joint": joint,
            "training": {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                         "stopped_early": result.stopped_early, "features": result.features,
                         "waves_per_batch": result.waves_per_batch, "val_brier": result.val_brier},
            "traffic": transport.traffic.summary(), "reveals": TRAINING_REVEALS,
            "seconds": time.perf_counter() - started})
        self.store.set_status(run_id, "completed")
        log.info("run %s completed: joint AUC %.4f on %d test rows; each party saved its own model part", run_id,
                 joint.get("auc", float("nan")), len(splits.test))
