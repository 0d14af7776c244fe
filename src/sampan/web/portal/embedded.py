"""`sampan portal` on one machine: the portal over HTTP on 127.0.0.1, its store in a folder, optional local platforms.

What it starts: the run store (SQLite in the folder, or PostgreSQL by URL; the audit-signing key in the folder),
the `Portal` service with its `EvaluationRunner` (each evaluation a bounded subprocess, results under
``folder/evaluations``), the web app (uvicorn in a thread), and the first admin with a one-time password (only
while the portal has none). Verification links go to the log (``folder/portal.log`` and stderr): there is no mail
server. With ``local_platforms`` it also starts Sampan's own in-repo platforms on loopback (weak, the negative
control, over HTTP; Sampan over HTTPS with a throwaway CA), each with a fresh bench token, and allow-lists each
platform's own "127.0.0.1:<port>" (`platform_allow`) so applicants can try the whole flow; the rest of loopback
stays refused (R17-PORTAL-2: allow-listing 127.0.0.1/32 made every local service of the operator's machine a
target of the qualification check); an evaluation of a project pointing at one of them runs that
platform inside the worker (Sampan's party kit needs the platform in the verifier's process), still under the
worker's time and memory limits.
Loopback only: a deployment serves `create_portal_app` behind a TLS proxy (docs/verification/portal.md).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sampan.files import private_directory

__all__ = ["EmbeddedPortal", "LocalPlatform", "PortalStarted", "LOOPBACK", "ADMIN_EMAIL", "platform_allow"]

log = logging.getLogger("sampan.portal")

LOOPBACK = ("127.0.0.1/32", "::1/128")  # never allow-listed whole any more (see platform_allow)
LOOPBACK_NAMES = ("127.0.0.1", "localhost")  # the Host headers the embedded portal answers (it listens on IPv4)
ADMIN_EMAIL = "admin@portal.localhost"


@dataclass(frozen=True)
class LocalPlatform:
    """One embedded platform as an applicant enters it: endpoint, bench token, and (Sampan, served over HTTPS) the
    file holding the throwaway CA certificate to paste as the project's TLS certificate."""

    url: str
    token: str = field(repr=False)
    ca_file: Path | None = None


def platform_allow(platforms: dict[str, LocalPlatform]) -> list[str]:
    """The egress allow-list entries that open the local platforms and nothing else: "host:port" of each URL."""
    from urllib.parse import urlsplit

    out: list[str] = []
    for local in platforms.values():
        parts = urlsplit(local.url)
        host = parts.hostname or "127.0.0.1"
        entry = f"[{host}]:{parts.port}" if ":" in host else f"{host}:{parts.port}"
        if entry not in out:
            out.append(entry)
    return out


def _stale_platform_entry(entry: str) -> bool:
    """A loopback "address:port" entry in the SAVED list: a local platform's port of an earlier start (the admin page
    shows, and so saves, the running list). Its port may now be any other local service's: never carried over."""
    import ipaddress
    import re

    found = re.fullmatch(r"\[?([0-9a-fA-F:.]+?)\]?:\d{1,5}", entry.strip())
    try:
        return found is not None and ipaddress.ip_address(found.group(1)).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class PortalStarted:
    """What the operator is told: the portal's URL, the first admin (password only at the first start), the local
    platforms (name -> LocalPlatform)."""

    url: str
    folder: Path
    admin_email: str
    admin_password: str | None
    platforms: dict[str, LocalPlatform] = field(default_factory=dict)


class _Server:
    """uvicorn on 127.0.0.1:``port`` (0: a free one) in a daemon thread."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind(("127.0.0.1", port))
        except OSError as exc:
            self._sock.close()
            from sampan.errors import ConfigError

            raise ConfigError(f"--port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror}); choose another "
                              "port or 0 for a free one") from None
        self.port = int(self._sock.getsockname()[1])
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name=f"portal-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the portal did not start on 127.0.0.1:{self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


class EmbeddedPortal:
    """Start with `start()` (returns `PortalStarted`), stop with `stop()`; a second start in the same folder resumes
    (accounts, projects, evaluations and the audit log are kept)."""

    def __init__(self, folder: str | Path, *, port: int = 8090, database_url: str | None = None,
                 local_platforms: bool = False, argon2_params: dict[str, int] | None = None,
                 time_limit_s: float = 1800.0, memory_limit_mb: int = 8192, key: bytes | None = None) -> None:
        self.folder = Path(folder)
        self.port, self.database_url, self.local_platforms = port, database_url, local_platforms
        self.argon2_params, self.time_limit_s, self.memory_limit_mb = argon2_params, time_limit_s, memory_limit_mb
        self.key = key
        self.portal: Any = None
        self.store: Any = None
        self._stack = contextlib.ExitStack()

    def start(self) -> PortalStarted:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> PortalStarted:
        from sampan.runtime.store import Store
        from sampan.verify.egress import EgressPolicy
        from sampan.web.portal.accounts import PortalAccounts
        from sampan.web.portal.allow_list import stored_allow_list
        from sampan.web.portal.app import PortalSettings, create_portal_app
        from sampan.web.portal.runner import EvaluationRunner
        from sampan.web.portal.service import Portal

        folder = private_directory(self.folder)
        self._log_to(folder / "portal.log")
        url = self.database_url or f"sqlite:///{folder / 'portal.db'}"
        self.store = Store.open(url, audit_key=folder / "audit-key.pem")
        self._stack.callback(self.store.close)
        platforms = self._start_platforms(folder) if self.local_platforms else {}
        stored = stored_allow_list(self.store.engine)
        allow = [entry for entry in (stored or []) if not _stale_platform_entry(entry)]
        if platforms:
            allow += [entry for entry in platform_allow(platforms) if entry not in allow]
        runner = EvaluationRunner(folder / "evaluations", time_limit_s=self.time_limit_s,
                                  memory_limit_mb=self.memory_limit_mb)
        self._stack.callback(runner.shutdown)
        accounts = PortalAccounts(self.store.engine, argon2_params=self.argon2_params, log_links=True)
        self.portal = Portal(self.store, folder, egress=EgressPolicy(allow), runner=runner, accounts=accounts)
        self.portal.local_platforms = {form: name for name, local in platforms.items()
                                       for form in (local.url, local.url + "/")}
        interrupted = self.portal.fail_interrupted()  # evaluations a stopped portal left running
        if interrupted:
            log.warning("%d evaluation(s) left running by the last stop were marked failed", interrupted)
        password = accounts.bootstrap_admin(ADMIN_EMAIL)
        app = create_portal_app(self.portal, PortalSettings(accounts=accounts, key=self.key, embedded=True,
                                                                  allowed_hosts=LOOPBACK_NAMES))
        server = _Server(app, self.port)
        self._stack.callback(server.stop)
        return PortalStarted(url=f"http://127.0.0.1:{server.port}/portal/", folder=folder, admin_email=ADMIN_EMAIL,
                             admin_password=password, platforms=platforms)

    def _start_platforms(self, folder: Path) -> dict[str, LocalPlatform]:
        """The weak and Sampan platforms' Benchmark APIs on loopback, as `sampan verify local` serves them: weak
        over plain HTTP, Sampan over HTTPS with a throwaway CA (its certificate in ``folder/local-sampan-ca.pem``,
        new at every start)."""
        from sampan.files import atomic_write_bytes
        from sampan.verify.pki import VerifierCA
        from sampan.verify.platforms.weak import WeakBackend
        from sampan.verify.serve_local import ServerTLS, serve_app
        from sampan.verify.server import make_benchmark_app
        from sampan.web.bench_api import SampanBackend

        out: dict[str, LocalPlatform] = {}
        for name, make in (("weak", WeakBackend), ("sampan", SampanBackend)):
            backend = make()
            close = getattr(backend, "close", None)
            if callable(close):
                self._stack.callback(close)
            token = secrets.token_urlsafe(24)
            tls, ca_file = None, None
            if name == "sampan":
                ca = self._stack.enter_context(VerifierCA(name="sampan portal local CA"))
                cert = ca.server_cert("127.0.0.1")
                tls = ServerTLS(cert.cert_file, cert.key_file)
                ca_file = atomic_write_bytes(folder / "local-sampan-ca.pem", ca.ca_pem.encode(), mode=0o644)
            server = self._stack.enter_context(serve_app(make_benchmark_app(backend, token=token), tls=tls))
            out[name] = LocalPlatform(server.url, token, ca_file)
        return out

    def _log_to(self, path: Path) -> None:
        """Portal warnings (verification links among them) to ``path`` as well as wherever logging goes already."""
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        logger = logging.getLogger("sampan.portal")
        logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
        self._stack.callback(logger.removeHandler, handler)
        self._stack.callback(handler.close)

    def stop(self) -> None:
        self._stack.close()
