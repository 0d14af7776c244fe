"""`sampan console`: a whole consortium on this machine: coordinator, control plane + console, three agents.

Why this shape: a new user should see the whole issue-14 flow (sign in, invite banks, register datasets,
approve a job, watch it run, open its report) in one command, on the same code a production deployment runs,
not on a mock. So this process runs the real deploy `Coordinator` (gRPC, mutual TLS, SQLite store) and the
control plane on top of it (`CoordinatorGateway`, `create_app`, uvicorn), both bound to 127.0.0.1 only;
every party is a separate agent process (`python -m sampan.cli.deploy party serve`) with its own key,
certificate, party.toml and generated sample table (`sampan.web.embedded_files`), each with a lifetime
budget and `[consent] console_decisions = true`.

Lifecycle: `start()` makes the folder on first use (and creates the first admin, whose one-time password is
returned once and stored nowhere but as an argon2 hash), or reuses it (runs, accounts, approvals, budgets
survive; an unfinished run resumes from its checkpoint, as a restarted coordinator always does). `stop()`
stops HTTP first (no new requests), then the coordinator (a run in progress ends "interrupted" and resumes
at the next start), then the agents (SIGTERM, then SIGKILL after a grace period). Agents are started with
PR_SET_PDEATHSIG on Linux so that even a killed console leaves no agent behind.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sampan.config import ConfigError
from sampan.web.embedded_files import ConsoleFolder, make_console_folder, open_console_folder, set_grpc_port

__all__ = ["ConsoleStarted", "EmbeddedConsole", "AgentProcess"]

log = logging.getLogger("sampan.console")
ADMIN = "admin"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the agent is killed when the console process dies, however it dies (no orphans). SIGKILL, not
    SIGTERM: an agent whose coordinator vanished without closing its stream was seen to sit on SIGTERM; its
    state (budget book, approvals) is written atomically, so a hard stop loses no committed entry."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class AgentProcess:
    """One party agent in its own process, in its own folder, logging to `<folder>/agent.out`."""

    def __init__(self, name: str, config: Path) -> None:
        self.name, self.config = name, config
        self.out = config.parent / "agent.out"
        self._fh = open(self.out, "ab")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-m", "sampan.cli.deploy", "party", "serve", "--config", str(config)]
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, cwd=config.parent,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, grace_s: float = 10.0) -> int | None:
        self.terminate()
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._fh.close()
        return self.proc.returncode


@dataclass(frozen=True)
class ConsoleStarted:
    """What `sampan console` prints: where to go and, on the first start only, the admin's one-time password."""

    url: str
    folder: Path
    first_start: bool
    admin_user: str
    admin_password: str | None
    grpc_port: int
    parties: tuple[str, ...]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bind(host: str, port: int) -> socket.socket:
    """The HTTP socket, bound before uvicorn starts (port 0 gives a free one; a busy port is a clear error)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"sampan console: cannot listen on {host}:{port} ({exc.strerror}); pass --port "
                          "with a free port (0 picks one)") from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def _log_to(path: Path) -> logging.Handler:
    """The coordinator's and control plane's log lines go to its log file (0600), warnings also to stderr."""
    from sampan.files import private_file

    private_file(path)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.ERROR)
    return handler


def _party_certificates(folder: ConsoleFolder) -> dict[str, str]:
    """Each party's certificate as its folder holds it (`<party>/<party>.crt`, made by `write_federation`)."""
    out = {}
    for party in folder.parties:
        cert = folder.root / party / f"{party}.crt"
        if cert.exists():
            out[party] = cert.read_text(encoding="ascii")
    return out


class EmbeddedConsole:
    """Coordinator + control plane in this process, agents beside it; see the module docstring."""

    def __init__(self, folder: str | Path, *, port: int = 8080, parties: int = 3, host: str = "127.0.0.1",
                 n_smes: int = 6000, budget_epsilon: float = 10.0, connect_timeout_s: float = 60.0) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError("sampan console serves on localhost only; use `sampan control-plane --config "
                              "coordinator.toml` (TLS, real members) to serve a network")
        self.folder_path = Path(folder).expanduser().resolve()
        self.port, self.host, self.parties_wanted = port, host, parties
        self.n_smes, self.budget_epsilon, self.connect_timeout_s = n_smes, budget_epsilon, connect_timeout_s
        self.folder: ConsoleFolder | None = None
        self.coordinator: Any = None
        self.plane: Any = None
        self.agents: dict[str, AgentProcess] = {}
        self._stop_coordinator = threading.Event()
        self._coordinator_thread: threading.Thread | None = None
        self._server: Any = None
        self._server_thread: threading.Thread | None = None
        self._log_handler: logging.Handler | None = None
        self.url = ""

    # --- start ------------------------------------------------------------------------------------------
    def start(self) -> ConsoleStarted:
        folder = open_console_folder(self.folder_path)
        first = folder is None
        if folder is None:
            folder = make_console_folder(self.folder_path, parties=self.parties_wanted, n_smes=self.n_smes,
                                         budget_epsilon=self.budget_epsilon)
        elif len(folder.parties) != self.parties_wanted:
            log.warning("%s holds a console of %d parties; --parties %d ignored", folder.root, len(folder.parties),
                        self.parties_wanted)
        self.folder = folder
        grpc_port = _free_port()
        set_grpc_port(folder, grpc_port)
        self._log_handler = _log_to(folder.log)
        try:
            sock = _bind(self.host, self.port)
        except ConfigError:
            self.stop()
            raise
        try:
            self._start_agents(folder)  # before any gRPC thread exists here (fork safety); they dial with backoff
            self._start_coordinator(folder)
            password = self._start_control_plane(sock)
        except BaseException:
            sock.close()
            self.stop()
            raise
        return ConsoleStarted(url=self.url, folder=folder.root, first_start=first, admin_user=ADMIN,
                              admin_password=password, grpc_port=grpc_port, parties=folder.parties)

    def _start_coordinator(self, folder: ConsoleFolder) -> None:
        from sampan.deploy.config import load_coordinator_config
        from sampan.deploy.coordinator import Coordinator

        self.coordinator = Coordinator(load_coordinator_config(folder.coordinator_config))
        self.coordinator.start()
        self._coordinator_thread = threading.Thread(target=self.coordinator.serve, args=(self._stop_coordinator,),
                                                    name="sampan-console-coordinator", daemon=True)
        self._coordinator_thread.start()

    def _start_control_plane(self, sock: socket.socket) -> str | None:
        import uvicorn

        from sampan.web.app import create_app
        from sampan.web.gateway_coordinator import CoordinatorGateway
        from sampan.web.service import ControlPlane

        self.plane = ControlPlane(self.coordinator.store, CoordinatorGateway(self.coordinator))
        assert self.folder is not None
        self.plane.known_certificates = _party_certificates(self.folder)  # recorded when the admin invites them
        password = self.plane.accounts.bootstrap_admin(ADMIN)  # None once any account exists (a restart)
        app = create_app(self.plane, secure_cookies=False)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._server_thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                               name="sampan-console-http", daemon=True)
        self._server_thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._server_thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError("sampan console: the HTTP server did not start (see the log)")
            time.sleep(0.02)
        port = int(sock.getsockname()[1])
        host = {"localhost": "127.0.0.1", "::1": "[::1]"}.get(self.host, self.host)
        self.url = f"http://{host}:{port}/"
        log.info("control plane and console on %s", self.url)
        return str(password) if password else None

    def _start_agents(self, folder: ConsoleFolder) -> None:
        for party in folder.parties:
            self.agents[party] = AgentProcess(party, folder.party_config(party))

    def wait_connected(self, timeout_s: float | None = None) -> list[str]:
        """Wait until every agent holds its stream; returns the parties still missing (with a reason logged)."""
        assert self.coordinator is not None and self.folder is not None
        missing = self.coordinator.hub.wait_for(list(self.folder.parties), timeout_s or self.connect_timeout_s)
        dead = [p for p, a in self.agents.items() if not a.alive()]
        for party in dead:
            log.error("party agent %s exited (code %s); see %s", party, self.agents[party].proc.returncode,
                      self.agents[party].out)
        return missing

    # --- stop -------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """HTTP, then the coordinator (a running run ends "interrupted" and resumes next time), then agents."""
        if self._server is not None:
            self._server.should_exit = True
            if self._server_thread is not None:
                self._server_thread.join(timeout=15)
            self._server = None
        if self._coordinator_thread is not None:
            self._stop_coordinator.set()
            self._coordinator_thread.join(timeout=45)
            self._coordinator_thread = None
        if self.coordinator is not None:
            self.coordinator.store.close()
        for agent in self.agents.values():  # all at once, then wait for each
            agent.terminate()
        for agent in self.agents.values():
            agent.stop()
        self.agents = {}
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    def __enter__(self) -> EmbeddedConsole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pids(console: EmbeddedConsole) -> list[int]:
    """The agent processes' ids (for tests that check nothing is left behind)."""
    return [a.pid for a in console.agents.values()]

