"""`sampan control-plane --config coordinator.toml`: a production coordinator with its control plane and console.

Why one process: the control plane reaches the agents only through the coordinator's hub (`CoordinatorGateway`),
so it runs where the coordinator runs, on the coordinator's own store (SQLite or PostgreSQL by URL). This
replaces `sampan coordinator serve` on that machine: the same gRPC listener, members, CRL watch and run queue,
plus HTTP(S) on the `[control_plane]` address of coordinator.toml.

`[control_plane]` keys (paths relative to coordinator.toml):

    listen        "127.0.0.1:8443"  host:port of the HTTP(S) listener
    tls_cert      server certificate (PEM) for HTTPS; required unless `listen` is a loopback address
    tls_key       its private key (0600, as every key here)
    client_ca     CA whose client certificates the listener verifies (agents and scripts with mTLS); optional
    client_crl    that CA's CRL, checked in the handshake (default: the coordinator's [tls] crl)
    require_client_cert   false: people sign in with passwords/tokens; true: every connection needs a certificate
    admin         "admin": the first consortium admin, created with a one-time password printed once at the
                  first start (stored only as an argon2 hash; it must be changed at first sign-in)
    secure_cookies  default: true with TLS (the session cookie is sent over HTTPS only)
    [control_plane.oidc]  optional OpenID Connect sign-in (sampan.web.oidc): issuer, client_id,
                  client_secret_file (0600) or client_secret_env, redirect_uri, scope

Refused, with the key named: plain HTTP on an address other than loopback (tokens and session cookies would
cross the network in clear), a certificate without its key, a missing file.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sampan.config import ConfigError, problems

__all__ = ["ControlPlaneSection", "load_control_plane", "serve_control_plane"]

log = logging.getLogger("sampan.console")


class ControlPlaneSection(BaseModel):
    """coordinator.toml's `[control_plane]` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = "127.0.0.1:8443"
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None
    client_crl: str | None = None
    require_client_cert: bool = False
    admin: str = Field("admin", min_length=1, max_length=64)
    secure_cookies: bool | None = None
    oidc: dict[str, Any] | None = None  # [control_plane.oidc], validated by sampan.web.oidc

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_section(data: dict[str, Any] | None, base: Path, source: str) -> ControlPlaneSection:
    """Validate `[control_plane]`, resolve its paths against `base`, and refuse unsafe combinations."""
    raw = dict(data or {})
    for key in ("tls_cert", "tls_key", "client_ca", "client_crl"):
        if isinstance(raw.get(key), str):
            raw[key] = str((base / raw[key]).resolve())
    oidc = raw.get("oidc")
    if isinstance(oidc, dict) and isinstance(oidc.get("client_secret_file"), str):
        raw["oidc"] = {**oidc, "client_secret_file": str((base / oidc["client_secret_file"]).resolve())}
    try:
        section = ControlPlaneSection.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source} [control_plane]: {problems(exc)}") from None
    where = f"{source} [control_plane]"
    if ":" not in section.listen or not section.listen.rsplit(":", 1)[1].isdigit() or not 0 <= section.port < 65536:
        raise ConfigError(f"{where} listen: expected host:port, got {section.listen!r}")
    if (section.tls_cert is None) != (section.tls_key is None):
        raise ConfigError(f"{where}: tls_cert and tls_key go together (HTTPS needs both)")
    if not section.tls and not _loopback(section.host):
        raise ConfigError(f"{where} listen = {section.listen!r}: plain HTTP is served on loopback only; set tls_cert "
                          "and tls_key to serve HTTPS on another address")
    if section.require_client_cert and section.client_ca is None:
        raise ConfigError(f"{where}: require_client_cert needs client_ca (the CA that signed the client certificates)")
    if section.client_ca is not None and not section.tls:
        raise ConfigError(f"{where}: client_ca verifies client certificates over TLS; set tls_cert and tls_key")
    if section.client_crl is not None and section.client_ca is None:
        raise ConfigError(f"{where}: client_crl goes with client_ca (the CRL of the CA that signs client certificates)")
    for key in ("tls_cert", "tls_key", "client_ca", "client_crl"):
        value = getattr(section, key)
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"{where} {key}: no file {value}")
    if section.oidc is not None:  # refused now (bad keys, unreadable secret), not at the first sign-in
        from sampan.web.oidc import settings_from_config

        settings_from_config(section.oidc, source=f"{source} [control_plane.oidc]")
    return section


def load_control_plane(path: str | Path) -> tuple[Any, ControlPlaneSection]:
    """The coordinator config and its validated `[control_plane]` section."""
    from sampan.deploy.config import load_coordinator_config

    path = Path(path)
    config = load_coordinator_config(path)
    return config, parse_section(config.control_plane, path.resolve().parent, str(path))


def uvicorn_options(section: ControlPlaneSection, default_crl: str | None = None) -> dict[str, Any]:
    """TLS (and client-certificate) options for uvicorn from the section. A client certificate is checked against
    `client_ca` and its CRL (`client_crl`, else `default_crl`: the coordinator's [tls] crl) in the handshake: a
    revoked one fails it."""
    import ssl

    if not section.tls:
        return {}
    options: dict[str, Any] = {"ssl_certfile": section.tls_cert, "ssl_keyfile": section.tls_key}
    if section.client_ca is not None:
        from sampan.web.tls_scope import TlsScopeH11Protocol

        options["http"] = TlsScopeH11Protocol  # the verified client certificate reaches the agent endpoints
        options["ssl_ca_certs"] = section.client_ca
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED if section.require_client_cert else ssl.CERT_OPTIONAL
        crl = section.client_crl or default_crl
        if crl is not None and Path(crl).is_file():
            def with_crl(_config: Any, default: Any) -> ssl.SSLContext:
                context: ssl.SSLContext = default()
                context.load_verify_locations(str(crl))
                context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
                return context

            options["ssl_context_factory"] = with_crl
    return options


def serve_control_plane(path: str | Path, *, echo: Any = print) -> None:
    """Run the coordinator and the control plane until SIGINT/SIGTERM, then stop both cleanly: HTTP first, then
    the coordinator (a running job ends "interrupted" and resumes at the next start), exit status 0."""
    import signal

    import uvicorn

    from sampan.crypto.identity import IdentityVerifier
    from sampan.deploy.coordinator import Coordinator
    from sampan.web.app import AppSettings, create_app
    from sampan.web.gateway_coordinator import CoordinatorGateway
    from sampan.web.service import ControlPlane

    config, section = load_control_plane(path)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda _n, _f: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    coordinator = Coordinator(config)
    coordinator.start()
    coordinator_stop = threading.Event()
    worker = threading.Thread(target=coordinator.serve, args=(coordinator_stop,), name="sampan-coordinator",
                              daemon=True)
    worker.start()
    server: Any = None
    http: threading.Thread | None = None
    try:
        plane = ControlPlane(coordinator.store, CoordinatorGateway(coordinator))
        secure = section.secure_cookies if section.secure_cookies is not None else section.tls
        verifier = IdentityVerifier.from_files(config.tls.ca, config.tls.crl)  # agents' client certificates
        from sampan.web.oidc import settings_from_config  # [control_plane.oidc]: OpenID Connect sign-in (T6)

        oidc = settings_from_config(section.oidc, source=f"{path} [control_plane.oidc]")
        app = create_app(plane, AppSettings(secure_cookies=secure, agent_verifier=verifier, oidc=oidc))
        server = uvicorn.Server(uvicorn.Config(app, host=section.host, port=section.port, log_level="warning",
                                               access_log=False, lifespan="off",
                                               **uvicorn_options(section, config.tls.crl)))
        http = threading.Thread(target=server.run, name="sampan-control-plane-http", daemon=True)
        http.start()  # not the main thread: uvicorn leaves the signals to us
        while not server.started:
            if not http.is_alive():
                raise ConfigError(f"{path} [control_plane]: cannot serve on {section.listen} (see the log)")
            time.sleep(0.02)
        # only once the port is ours: a start that cannot listen must not create an admin whose password it
        # never prints (the next start would find the account and print none)
        password = plane.accounts.bootstrap_admin(section.admin)
        scheme = "https" if section.tls else "http"
        echo(f"sampan control plane: {scheme}://{section.listen}/ (coordinator on {config.coordinator.listen})")
        if password:
            echo(f"first admin: {section.admin}  one-time password: {password}  (shown once; change it at sign-in)")
        while not stop.wait(0.5):
            if not http.is_alive():
                raise ConfigError(f"{path} [control_plane]: the HTTP server stopped (see the log)")
        log.info("stopping the control plane and the coordinator")
    finally:
        if server is not None:
            server.should_exit = True
            if http is not None:
                http.join(timeout=15)
        coordinator_stop.set()
        worker.join(timeout=45)
        coordinator.store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
