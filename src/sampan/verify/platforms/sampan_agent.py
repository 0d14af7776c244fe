"""The verifier's Sampan party in deployed mode: a real Sampan party agent dialling the platform's coordinator.

Why: in this mode the verifier's party is on the wire like any bank's. The kit writes what a bank's operator would
(its rows as a CSV, its certificate, key, the consortium CA and CRL, a party.toml) into a private temp folder, and
runs `sampan.deploy.party_agent.PartyAgent` in a thread of the verifier's process: gRPC with mutual TLS to
``PartyConnect.address`` (the verifier's recording proxy), the agent's own checks (allow-list, consent rules, keyed
holdout, run-key signatures against the CA and CRL, SecAgg+). The only additions are the verifier's: every message
the agent receives and every reply it sends goes to the tap in the clear (`sampan_taps.Seated`), and the Byzantine
hook acts inside the party's SecAgg+ step, exactly where the in-process kit puts it.

The table's schema: the kit is given rows, not the task, so it binds them as ``id`` (made when absent), the label
(``label``, else ``y``, else ``target``) and every other column as a float feature; the job names which it uses.
A party presenting no certificate (the S-TLS-NO-CLIENT-CERT probe) dials with no client certificate at all.
"""

from __future__ import annotations

import csv
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sampan.files import atomic_write_bytes, atomic_write_text, private_directory
from sampan.verify.api import PartyConnect, TableData
from sampan.verify.kits import ClientTLS, KitError, Tap, UpdateHook
from sampan.verify.platforms.sampan_kit import PROTOCOL
from sampan.verify.platforms.sampan_taps import Seated, seat_mod

__all__ = ["DATASET", "PROTOCOL", "run_agent"]

DATASET = "bench"  # the dataset name a deployed benchmark job names (`[deploy] dataset`)
LABELS = ("label", "y", "target")
GONE_S = 10.0  # an admitted party whose coordinator stays away this long ends (a failed run is not closed)


class _Place:
    """What the tap wrapper reads: the verifier's tap, its hook, and whether the kit was stopped."""

    def __init__(self, tap: Tap, update_hook: UpdateHook | None) -> None:
        self.tap, self.update_hook = tap, update_hook
        self.left = threading.Event()


class _Failures(logging.Handler):
    """The agent's last connection failure (what the coordinator or the TLS handshake said), for the kit's error."""

    def __init__(self, party: str) -> None:
        super().__init__(logging.WARNING)
        self.party, self.last = party, ""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith(f"{self.party}:") or f"party {self.party}" in text:
            self.last = text[:500]


def _write_rows(path: Path, data: TableData, party: str) -> dict[str, Any]:
    """The rows as a CSV; returns the party.toml schema that binds them."""
    label = next((c for c in LABELS if c in data.columns), None)
    own_ids = "id" in data.columns
    features = [c for c in data.columns if c not in ("id", label)]
    index = {c: j for j, c in enumerate(data.columns)}
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["id", *features, *([label] if label else [])])
        for i, row in enumerate(data.rows):
            cells = ["" if row[index[c]] is None else row[index[c]] for c in features]
            tail = [int(float(row[index[label]]))] if label else []  # type: ignore[arg-type]
            out.writerow([row[index["id"]] if own_ids else f"{party}-{i}", *cells, *tail])
    return {"id": "id", **({"label": label} if label else {}), "features": features}


def _party_toml(folder: Path, party: str, connect: PartyConnect, tls: ClientTLS, schema: dict[str, Any]) -> Path:
    from sampan.deploy.local import toml_dumps

    ca = tls.ca_pem or connect.ca_pem
    if not ca:
        raise KitError(f"party {party!r}: the platform gave no CA for its coordinator (PartyConnect.ca_pem)")
    atomic_write_text(folder / "ca.pem", ca)
    files = {"ca": "ca.pem", "cert": "party.crt", "key": "party.key"}
    if tls.cert_pem is None or tls.key_pem is None:
        _placeholder(folder)
    else:
        atomic_write_text(folder / "party.crt", tls.cert_pem)
        atomic_write_bytes(folder / "party.key", tls.key_pem.encode(), mode=0o600)
    if tls.crl_pem:
        atomic_write_text(folder / "crl.pem", tls.crl_pem)
        files["crl"] = "crl.pem"
    host = connect.address.rpartition(":")[0].strip("[]")
    config = {"party": {"name": party, "coordinator": connect.address, "server_name": connect.server_name or host,
                        "state_dir": "state", "backoff_initial_s": 0.2, "backoff_max_s": 1.0},
              "tls": files,
              "data": {DATASET: {"path": str(folder / "rows.csv"), "schema": schema}}}
    atomic_write_text(folder / "party.toml", toml_dumps(config))
    return folder / "party.toml"


def _agent_class() -> Any:
    from sampan.deploy.party_agent import PartyAgent
    from sampan.wire import Message

    class KitAgent(PartyAgent):
        """A Sampan party agent whose run apps are wrapped with the verifier's tap and hook."""

        place: _Place
        closed: threading.Event

        def _open(self, message: Message) -> Message:
            known = message.run_id in self._runs
            reply: Message = super()._open(message)
            context = self._runs.get(message.run_id)
            if context is not None and not known:
                seat_mod(context.app, self.place)
                context.app = Seated(context.app, self.place)  # type: ignore[assignment]
            return reply

        def _close(self, message: Message) -> Message:
            reply: Message = super()._close(message)
            self.closed.set()
            return reply

        def serve_on(self, link: Any, stop: threading.Event) -> None:
            """`PartyAgent.serve` on the kit's own link (see `_link`), on the agent's default local engine."""
            for name in self.config.data:
                self.table(name)
            self.link = link
            link.serve_forever(stop)

        def handle(self, message: Message) -> Message:
            if message.kind in ("deploy.open_run", "deploy.close_run", "consent.request"):
                self.place.tap.received(message.kind, message.step, dict(message.arrays))
            reply: Message = super().handle(message)
            return reply

    return KitAgent


def _link(agent: Any, tls: ClientTLS, ca: str) -> Any:
    """The agent's own link (`sampan.deploy.agent_link.open_link`) with the certificate the verifier chose (or none)
    and without the agent's pre-flight self-checks: a bank's agent refuses to present its own expired certificate,
    but here the platform's coordinator is under test, so it must be the one that refuses what the party presents."""
    import grpc

    from sampan.deploy.agent_link import open_link

    link = open_link(agent.config, agent.handle)
    link.preflight = None
    if tls.cert_pem is None or tls.key_pem is None:  # no client certificate (open_link read a placeholder)
        link.credentials = grpc.ssl_channel_credentials(root_certificates=ca.encode())
    return link


def _placeholder(folder: Path) -> None:
    """A throwaway self-signed certificate and key where the party's files must exist but are never presented."""
    from cryptography.hazmat.primitives import serialization

    from sampan.crypto.simulated_ca import SimulatedCA

    identity = SimulatedCA("placeholder, never presented").issue("placeholder")
    key = identity.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
    atomic_write_bytes(folder / "party.crt", identity.certificate.public_bytes(serialization.Encoding.PEM))
    atomic_write_bytes(folder / "party.key", key, mode=0o600)


def run_agent(job_id: str, party: str, data: TableData, connect: PartyConnect, tls: ClientTLS | None, tap: Tap,
              stop: threading.Event, update_hook: UpdateHook | None) -> None:
    """Run the verifier's party agent until the platform closes the job's run at it, or ``stop`` is set.

    Raises KitError when it was never admitted (naming the last refusal) or ended with an error."""
    from sampan.deploy.config import load_party_config

    tls = tls or ClientTLS()
    folder = private_directory(Path(tempfile.mkdtemp(prefix=f"sampan-kit-{party}-")))
    failures = _Failures(party)
    loggers = [logging.getLogger(n) for n in ("sampan.deploy.party", "sampan.transport.grpc_client")]
    for lg in loggers:
        lg.addHandler(failures)
    try:
        schema = _write_rows(folder / "rows.csv", data, party)
        config = load_party_config(_party_toml(folder, party, connect, tls, schema))
        agent = _agent_class()(config)
        agent.place, agent.closed = _Place(tap, update_hook), threading.Event()
        inner = threading.Event()
        errors: list[BaseException] = []

        def serve() -> None:
            try:
                agent.serve_on(_link(agent, tls, str(tls.ca_pem or connect.ca_pem)), inner)
            except BaseException as exc:  # noqa: BLE001 - reported by the kit
                errors.append(exc)

        thread = threading.Thread(target=serve, name=f"sampan-kit-agent-{party}", daemon=True)
        thread.start()
        admitted, gone_since, gone = False, None, False
        while not agent.closed.wait(0.05):
            admitted = admitted or bool(agent._runs)
            if stop.is_set() or not thread.is_alive():
                break
            # a run that failed is not closed at its parties: once admitted, a coordinator gone for GONE_S ends it
            up = agent.link is not None and agent.link.connected.is_set()
            gone_since = None if up or not admitted else (gone_since or time.monotonic())
            if gone_since is not None and time.monotonic() - gone_since > GONE_S:
                gone = True
                break
        if agent.closed.is_set() and agent.link is not None:  # let the reply to close_run leave first: the
            deadline = time.monotonic() + 2.0             # coordinator ends the stream, or 2 s pass
            while agent.link.connected.is_set() and time.monotonic() < deadline and not stop.is_set():
                time.sleep(0.05)
        elif stop.is_set():
            agent.place.left.set()
        inner.set()
        if agent.link is not None:
            agent.link.close()
        thread.join(15)
        reason = f"{type(errors[0]).__name__}: {errors[0]}" if errors else failures.last
        if not (admitted or agent.closed.is_set()):
            raise KitError(f"party {party!r} of job {job_id!r} was never admitted by the coordinator"
                           + (f": {reason}" if reason else ""))
        if errors:
            raise KitError(f"party {party!r} of job {job_id!r}: {reason}")
        if gone:
            raise KitError(f"party {party!r} of job {job_id!r}: the coordinator closed the connection and did not "
                           f"come back within {GONE_S:g} s, without closing the run at this party (the job ended "
                           "without it, or failed)")
    finally:
        for lg in loggers:
            lg.removeHandler(failures)
        shutil.rmtree(folder, ignore_errors=True)
