"""Sampan's benchmark backend in deployed mode: each job runs on a real Sampan deployment (gRPC, mutual TLS).

Why: the verifier must see its party's messages at the wire (bytes per round through its recording proxy) and must be
able to present bad certificates (S-TLS-*) to Sampan's real coordinator, not to an in-process stand-in.

Trust (one consortium CA, the verifier's): the backend is given the verifier's CA as ``issuer`` (`VerifierCA`, or
anything with its ``issue``, ``ca_pem`` and ``crl_file``); a project's ``ca_pem`` must be that CA. Every certificate
of the deployment comes from it: the coordinator's server certificate (CN ``coordinator``), the platform-operated
agents' client certificates, and the verifier's party's (which the verifier registers as ``certificate_pem``). The
coordinator trusts that CA and its CRL (the verifier's live crl.pem), and pins every member name to one key:
platform parties to the key of the certificate issued for them here, the verifier's party to the key of its
registered certificate; an expired, wrong-CA, revoked, self-signed or other-key certificate, or none, is refused.
Peers check each other's SecAgg+ run keys against the same CA and CRL. So the verifier, who runs the CA, could mint
a certificate for a platform party's name, but the coordinator would refuse it (pinned key): running the CA gives it
no access it did not already have. Over HTTP alone (no ``issuer``) the API has no call to have the verifier certify
the platform's coordinator and agents, so such a backend stays in-process (documented in sampan-adapter.md).

Per job: the platform parties' rows are written as their tables, a federation folder is written (coordinator.toml
with the members and pins, one party.toml per platform party), the deploy `Coordinator` and one `PartyAgent` per
platform party start in threads of this process, the coordinator listens on the project's port (fixed at project
creation: it is the address `Party.connect` gave), the run is submitted as an operator would, every party approves
it by its standing rules, and at the end all of it stops; the coordinator's store stays open for results and model.
Horizontal jobs only (a vertical job here is refused: its agents would need [allow] partners and label holders).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sampan.verify.api import RoundResult
from sampan.verify.backend import BackendError
from sampan.verify.platforms.sampan_agent import DATASET
from sampan.web.bench_jobs import JobRun, PartyEntry, config_data, now, write_table

__all__ = ["DeployedSite", "run_deployed", "pin_of"]

TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class DeployedSite:
    """A project's deployment: its issuer (the consortium CA) and the port its coordinator listens on."""

    issuer: Any
    port: int
    stores: list[Any] = field(default_factory=list)  # the jobs' coordinator stores (closed with the backend)
    busy: threading.Lock = field(default_factory=threading.Lock)  # one job at a time owns the port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def pin_of(certificate_pem: str, party: str, ca_pem: str) -> str:
    """The key pin of a verifier party's registered certificate, after checking it names ``party`` and comes from
    the consortium CA (a BackendError naming the field otherwise)."""
    from cryptography import x509

    from sampan.crypto.identity import IdentityError, check_certificate
    from sampan.deploy.cert_checks import spki_pin

    try:
        cert = x509.load_pem_x509_certificate(certificate_pem.encode())
        ca = x509.load_pem_x509_certificate(ca_pem.encode())
        check_certificate(cert, ca, peer=party, role="party", signing=False)
    except ValueError as exc:
        raise BackendError("invalid", f"party {party!r}: unreadable certificate_pem ({exc})",
                           "certificate_pem") from None
    except IdentityError as exc:
        raise BackendError("invalid", f"party {party!r}: certificate_pem refused: {exc}", "certificate_pem") from None
    return spki_pin(cert)


def _write_federation(folder: Path, site: DeployedSite, job: JobRun, parties: Mapping[str, PartyEntry]) -> tuple[
        Path, dict[str, Path]]:
    """coordinator.toml and one party.toml per platform party (their tables already written under ``folder``)."""
    from sampan.deploy.cert_checks import spki_pin
    from sampan.deploy.local import toml_dumps
    from sampan.files import atomic_write_text, private_directory

    issuer, spec = site.issuer, job.spec
    ca = atomic_write_text(folder / "ca.pem", issuer.ca_pem)
    crl = str(Path(issuer.crl_file).resolve())
    server = issuer.issue("coordinator", usage="server", hosts=("127.0.0.1", "localhost"))
    members, configs = [], {}
    for name in spec.features:
        entry = parties[name]
        if entry.operated_by == "verifier":
            assert entry.pin is not None
            members.append({"name": name, "role": "party", "pin": entry.pin})
            continue
        cert = issuer.issue(name, usage="client")
        members.append({"name": name, "role": "party", "pin": spki_pin(cert.certificate)})
        home = private_directory(folder / name)
        schema = {"id": spec.id_column or "id", "label": spec.label, "features": list(spec.features[name])}
        config = {"party": {"name": name, "coordinator": site.address, "server_name": "localhost",
                            "state_dir": "state", "backoff_initial_s": 0.2, "backoff_max_s": 1.0},
                  "tls": {"ca": str(ca), "cert": str(cert.cert_file), "key": str(cert.key_file), "crl": crl},
                  "data": {DATASET: {"path": str(folder / f"{name}.csv"), "schema": schema}}}
        configs[name] = atomic_write_text(home / "party.toml", toml_dumps(config))
    home = private_directory(folder / "coordinator")
    coordinator = {"coordinator": {"name": "coordinator", "listen": site.address, "state_dir": "state",
                                   "report_dir": "reports",
                                   # the run fails (naming the party) before the job's own deadline cancels it
                                   "connect_timeout_s": max(1.0, min(0.8 * spec.timeout_s, spec.timeout_s - 3.0)),
                                   "rejoin_timeout_s": 30.0,
                                   # no request outlives the job; a loaded machine may delay a heartbeat
                                   "request_timeout_s": float(spec.timeout_s), "silent_after_s": 20.0},
                   "tls": {"ca": str(ca), "cert": str(server.cert_file), "key": str(server.key_file), "crl": crl},
                   "members": members}
    return atomic_write_text(home / "coordinator.toml", toml_dumps(coordinator)), configs


@dataclass
class _Finished:
    """What the backend reads of a finished deployed run (the fields of `runtime.runner.FinishedRun` it uses)."""

    run_id: str
    final_metrics: dict[str, Any]
    model_name: str | None
    model_version: int | None


def run_deployed(job: JobRun, folder: Path, site: DeployedSite, parties: Mapping[str, PartyEntry]) -> None:
    """The job's whole life on a deployment (run in its own thread); never raises: failures become state failed."""
    with job.lock:
        job.state, job.started_at = "running", now()
    if not site.busy.acquire(blocking=False):
        job._fail("conflict", "another job of this project is running on its coordinator; wait for it", None, {})
        with job.lock:
            job.finished_at = now()
        return
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        job_folder = folder / job.job_id
        job_folder.mkdir(mode=0o700)
        for name in job.spec.features:
            entry = parties[name]
            if entry.operated_by == "platform":
                assert entry.data is not None
                write_table(job_folder / f"{name}.csv", entry.data, list(job.spec.features[name]), party=name,
                            id_column=job.spec.id_column or "id", label=job.spec.label)
        seed = job.spec.seed if job.spec.seed is not None else secrets.randbits(62)
        data = config_data(job.spec, job_folder, parties, seed)
        data.pop("parties", None)
        data["run"] = {k: v for k, v in data["run"].items() if k != "report_dir"}
        data["deploy"] = {"dataset": DATASET, "parties": list(job.spec.features)}
        coordinator_toml, agents = _write_federation(job_folder, site, job, parties)
        coordinator = _start(coordinator_toml, agents, stop, threads)
        site.stores.append(coordinator.store)
        _drive(job, coordinator, data)
    except BackendError as exc:
        job._fail(exc.code, exc.message, exc.field, {})
    except Exception as exc:  # noqa: BLE001 - the API reports every failure as a state, never a traceback
        job._fail(None if job.cancel.is_set() else "internal", f"{type(exc).__name__}: {exc}", None, {})
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        site.busy.release()
        with job.lock:
            job.finished_at = now()


def _start(coordinator_toml: Path, agents: Mapping[str, Path], stop: threading.Event,
           threads: list[threading.Thread]) -> Any:
    from sampan.deploy.config import load_coordinator_config, load_party_config
    from sampan.deploy.coordinator import Coordinator
    from sampan.deploy.party_agent import PartyAgent

    coordinator = Coordinator(load_coordinator_config(coordinator_toml))
    coordinator.start()
    threads.append(threading.Thread(target=coordinator.serve, args=(stop,), name="bench-coordinator", daemon=True))
    for name, path in agents.items():
        agent = PartyAgent(load_party_config(path))
        threads.append(threading.Thread(target=agent.serve, args=(stop,), name=f"bench-agent-{name}", daemon=True))
    for thread in threads:
        thread.start()
    return coordinator


def _drive(job: JobRun, coordinator: Any, data: dict[str, Any]) -> None:
    """Submit the run as an operator would, follow its rounds, and record how it ended."""
    from sampan.transport.grpc_session import Identity
    from sampan.wire import Message

    operator = Identity("benchmark", "operator")
    reply = coordinator.submit(operator, Message("", 0, "benchmark", "coordinator", "deploy.submit",
                                                 meta={"config": data}))
    run_id = str(reply.meta["run_id"])
    deadline = time.monotonic() + job.spec.timeout_s
    seen, mark, cancelled, picked, running = 0, time.monotonic(), False, False, False
    while True:
        row = coordinator.store.get_run(run_id)
        current = coordinator.current == run_id
        picked = picked or current
        if not running and row.status == "running":  # round 1 is timed from the run's start, not its submission
            running, mark = True, time.monotonic()
        if row.current_round > seen:  # per-round wall time as the backend sees it (polled every 50 ms)
            at = time.monotonic()
            for r in range(seen + 1, row.current_round + 1):
                _round(job, r, (at - mark) / (row.current_round - seen))
            seen, mark = row.current_round, at
        if row.status in TERMINAL and not current:
            break
        if cancelled and picked and not current:  # cancelled before its runner started (e.g. while it waited
            break                                   # for a party): the coordinator leaves no terminal status then
        if cancelled and time.monotonic() > deadline + 30:  # the coordinator did not end it: stop it (finally)
            raise BackendError("internal", f"the deployed run did not stop within 30 s of its cancellation "
                               f"(round {row.current_round}/{job.spec.rounds})")
        if not cancelled and (job.cancel.is_set() or time.monotonic() > deadline):
            try:
                coordinator.cancel(operator, Message("", 0, "benchmark", "coordinator", "deploy.cancel",
                                                     meta={"run_id": run_id}))
            except Exception:  # noqa: BLE001 - it ended meanwhile: the next poll reads how
                pass
            cancelled = True
        time.sleep(0.05)
    info = row.info or {}
    if row.status == "completed":
        model = info.get("model") or {}
        job.store = coordinator.store
        with job.lock:
            job.finished = _Finished(run_id, dict(info.get("final_metrics") or {}), model.get("name"),  # type: ignore[assignment]
                                     model.get("version"))
            job.state = "succeeded"
    elif job.cancel.is_set():
        job._fail(None, "cancelled", None, {})
    elif cancelled:
        raise BackendError("invalid", f"the job did not finish within timeout_s={job.spec.timeout_s} "
                           f"(coordinator: {row.error or row.status})", "timeout_s")
    elif "did not connect" in str(row.error):  # a party the coordinator never admitted (its TLS checks refused it)
        raise BackendError("invalid", f"the deployed run failed: {row.error}", "timeout_s")
    else:
        job._fail("internal", f"the deployed run failed: {row.error or 'no reason recorded'}", None, {})


def _round(job: JobRun, number: int, seconds: float) -> None:
    result = RoundResult(round=number, seconds=max(0.0, seconds), parties=list(job.spec.features))
    with job.lock:
        job.round = number
        job.rounds.append(result)
