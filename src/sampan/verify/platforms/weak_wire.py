"""The weak platform's data plane: an HTTP JSON aggregator on 127.0.0.1 that trusts whatever it is sent.

Deliberately insecure (a negative control for the verifier's security tests, never a product):
- plain HTTP, or TLS with a self-signed server certificate that never asks for a client certificate;
- a party is whoever names it in the JSON body (no authentication, any name accepted);
- no replay check (an update re-sent within its round counts again; one for a past round is answered 200 and
  ignored), no size limit on a body, no norm or shape check (a Byzantine, scaled or NaN update goes straight into
  the average; a wrong-length one makes the job fail);
- every message (statistics, model updates, vertical ids, partial logits, residuals) is clear JSON.

Endpoints (base /weak/v1/jobs/{job_id}/): GET task, GET model?after=R (long poll), GET plan, GET residual?round=R;
POST stats, update, ids, logits, final. A `Room` per job is the mailbox the job thread and the handlers share.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

PROTOCOL = "weak-http-json/1"
BASE = "/weak/v1/jobs/"
LONG_POLL_S = 2.0
DONE = ("succeeded", "failed", "cancelled")


class Room:
    """One job's shared state: what the platform publishes and what the verifier's parties posted (in the clear)."""

    def __init__(self, job_id: str, task: dict[str, Any]) -> None:
        self.job_id = job_id
        self.task = task
        self.cond = threading.Condition()
        self.state = "queued"
        self.error: str | None = None
        self.model: dict[str, Any] = {"round": 0}  # horizontal: the global model for round `round`
        self.stats: dict[str, dict[str, Any]] = {}
        self.updates: dict[int, list[dict[str, Any]]] = {}
        self.ids: dict[str, list[str]] = {}
        self.plan: dict[str, Any] | None = None  # vertical: joined ids and how many are training rows
        self.logits: dict[int, dict[str, list[float]]] = {}
        self.residuals: dict[int, list[float]] = {}
        self.finals: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ platform side
    def publish(self, **changes: Any) -> None:
        with self.cond:
            for key, value in changes.items():
                setattr(self, key, value)
            self.cond.notify_all()

    def wait(self, ready: Callable[[], bool], deadline: float, stop: threading.Event) -> bool:
        """Block until `ready()` (checked under the lock), the deadline passes or `stop` is set."""
        with self.cond:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0 or stop.is_set():
                    return False
                self.cond.wait(min(left, 0.2))
            return True

    # ------------------------------------------------------------------ party side (HTTP handlers)
    def view(self, what: str, query: dict[str, str]) -> dict[str, Any]:
        with self.cond:
            if what == "task":
                return {**self.task, "state": self.state}
            if what == "model":
                after = int(query.get("after", "-1"))
                end = time.monotonic() + LONG_POLL_S
                while self.model.get("round", 0) <= after and self.state not in DONE and time.monotonic() < end:
                    self.cond.wait(0.2)
                return {**self.model, "state": self.state, "error": self.error}
            if what == "plan":
                end = time.monotonic() + LONG_POLL_S
                while self.plan is None and self.state not in DONE and time.monotonic() < end:
                    self.cond.wait(0.2)
                return {"plan": self.plan, "state": self.state, "error": self.error}
            if what == "residual":
                r = int(query.get("round", "0"))
                end = time.monotonic() + LONG_POLL_S
                while r not in self.residuals and self.state not in DONE and time.monotonic() < end:
                    self.cond.wait(0.2)
                return {"round": r, "residual": self.residuals.get(r), "state": self.state, "error": self.error}
        raise KeyError(what)

    def post(self, what: str, body: dict[str, Any]) -> dict[str, Any]:
        party = str(body.get("party", ""))  # whoever names a party is that party
        with self.cond:
            if what == "stats":
                self.stats[party] = body
            elif what == "update":
                self.updates.setdefault(int(body.get("round", 0)), []).append(body)
            elif what == "ids":
                self.ids[party] = [str(i) for i in body.get("ids", [])]
            elif what == "logits":
                self.logits.setdefault(int(body.get("round", 0)), {})[party] = body.get("logits", [])
            elif what == "final":
                self.finals[party] = body
            else:
                raise KeyError(what)
            self.cond.notify_all()
        return {"accepted": True}


class _Handler(BaseHTTPRequestHandler):
    server: _WeakHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: a test prints nothing per request
        return None

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[Room, str, dict[str, str]] | None:
        url = urlparse(self.path)
        if not url.path.startswith(BASE):
            self._reply(404, {"error": f"no such path {url.path}"})
            return None
        job_id, _, what = url.path[len(BASE):].partition("/")
        room = self.server.rooms.get(job_id)
        if room is None:
            self._reply(404, {"error": f"no job {job_id!r}"})
            return None
        return room, what, {k: v[-1] for k, v in parse_qs(url.query).items()}

    def do_GET(self) -> None:
        routed = self._route()
        if routed is None:
            return
        room, what, query = routed
        try:
            self._reply(200, room.view(what, query))
        except KeyError:
            self._reply(404, {"error": f"no such view {what!r}"})
        except ValueError as exc:
            self._reply(400, {"error": str(exc)})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)  # no size limit: the weak platform reads whatever it is sent
        routed = self._route()
        if routed is None:
            return
        room, what, _ = routed
        try:
            body = json.loads(raw)
        except ValueError:
            self._reply(400, {"error": "body is not JSON"})
            return
        if not isinstance(body, dict):
            self._reply(400, {"error": "body is not a JSON object"})
            return
        try:
            self._reply(200, room.post(what, body))
        except KeyError:
            self._reply(404, {"error": f"no such message {what!r}"})
        except (TypeError, ValueError) as exc:
            self._reply(400, {"error": str(exc)})


class _WeakHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    rooms: dict[str, Room]


def self_signed(host: str = "localhost") -> tuple[str, str]:
    """A throwaway self-signed server certificate and key (PEM): the weak platform's whole PKI."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert_pem, key_pem


class Aggregator:
    """The weak aggregator's listener: 127.0.0.1, an ephemeral port, a thread; TLS optional and one-sided."""

    def __init__(self, *, tls: bool = False) -> None:
        self.rooms: dict[str, Room] = {}
        self.server = _WeakHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.rooms = self.rooms
        self.cert_pem: str | None = None
        if tls:
            cert_pem, key_pem = self_signed()
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.verify_mode = ssl.CERT_NONE  # never asks for, never checks a client certificate
            with tempfile.TemporaryDirectory(prefix="sampan-weak-") as folder:
                cert_file, key_file = Path(folder) / "cert.pem", Path(folder) / "key.pem"
                cert_file.write_text(cert_pem)
                key_file.touch(mode=0o600)
                key_file.write_text(key_pem)
                context.load_cert_chain(cert_file, key_file)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True,
                                                     do_handshake_on_connect=False)  # in the handler thread
            self.cert_pem = cert_pem
        self._thread = threading.Thread(target=self.server.serve_forever, name="weak-aggregator", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def open_room(self, job_id: str, task: dict[str, Any]) -> Room:
        room = Room(job_id, task)
        self.rooms[job_id] = room
        return room

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
