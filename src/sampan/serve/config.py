"""`bank-serve.toml`: which model the service scores with, where it listens, and who may call it.

    [serve]
    store = "sqlite:///sampan-runs/sampan.db"   # the bank's run store / model registry
    model = "taiwan-fedavg@3"                   # a horizontal model (name[@version]), scored here
    # vertical_run = "20261207-..."             # or a vertical run's model, scored with the partners
    # kind = "lr"                               # lr | scorecard | gbdt (vertical)
    # agent = "party.toml"                      # deployed vertical: this process is the bank's agent (dials out)
    host = "127.0.0.1"
    port = 8443
    # threshold = 0.2                           # default: the model's own (none: no decisions)
    # workers = 2                               # uvicorn worker processes, each with its own backend/session

    [serve.auth]
    tokens_file = "scoring-tokens.txt"          # lines client:sha256:<hex> (`sampan serve token CLIENT`)
    # tokens_env = "SAMPAN_SERVE_TOKENS"        # the same entries, comma-separated
    monitor_tokens_file = "monitor-tokens.txt"  # who may read /v1/monitoring (not the scoring tokens); or _env

    [serve.tls]                                 # HTTPS; with client_ca, clients need its certificates (mTLS)
    cert = "serve.crt"
    key = "serve.key"
    client_ca = "scoring-clients-ca.crt"

Relative paths are read from the config file's folder.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from sampan.config.base import Strict, problems
from sampan.errors import ConfigError
from sampan.serve.auth import TlsFiles, TokenBook

__all__ = ["ServeConfig", "load_serve_config"]


class AuthSection(Strict):
    tokens_file: Path | None = None
    tokens_env: str | None = None
    allow_unauthenticated: bool = False  # loopback only: no token and no client certificate
    monitor_tokens_file: Path | None = None  # the only tokens /v1/monitoring accepts (a scoring token may not)
    monitor_tokens_env: str | None = None


class TlsSection(Strict):
    cert: Path
    key: Path
    client_ca: Path | None = None
    client_crl: Path | None = None  # the client CA's CRL (default: crl.pem beside client_ca); restart to reload


class ServeSection(Strict):
    store: str | None = None
    model: str | None = None
    vertical_run: str | None = None
    kind: str = "lr"
    agent: Path | None = None  # the bank's party.toml: serve a deployed vertical run through the coordinator
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=0, le=65535)
    threshold: float | None = Field(None, gt=0.0, lt=1.0)
    max_batch: int = Field(256, ge=1, le=10000)
    max_body_bytes: int = Field(1 << 20, ge=1024, le=64 << 20)  # larger request bodies are answered 413
    workers: int = Field(1, ge=1, le=64)
    # /v1/monitoring's decisions, score bands and drift refresh once per this many scored requests (never per
    # request: a reader comparing two readings around one request would learn that applicant's band)
    monitor_every: int = Field(100, ge=10)
    auth: AuthSection = AuthSection()
    tls: TlsSection | None = None

    @model_validator(mode="after")
    def _one_model(self) -> ServeSection:
        if (self.model is None) == (self.vertical_run is None):
            raise ValueError("set exactly one of model (a horizontal model, name[@version]) and vertical_run")
        if self.agent is not None and self.vertical_run is None:
            raise ValueError("agent (the bank's party.toml) serves a deployed vertical_run; a horizontal model is "
                             "scored here without one")
        if self.agent is not None and self.workers > 1:
            raise ValueError("agent: one process is the bank's agent (one connection per member); workers must be 1")
        if self.kind not in ("lr", "scorecard", "gbdt"):
            raise ValueError(f"kind: lr, scorecard or gbdt, not {self.kind!r}")
        return self


class ServeConfig:
    """The parsed `[serve]` section, with its file's folder for relative paths, its token book and TLS files."""

    def __init__(self, section: ServeSection, base: Path, source: str) -> None:
        self.section, self.base, self.source = section, base, source

    def _path(self, path: Path | None) -> Path | None:
        return None if path is None else (path if path.is_absolute() else self.base / path)

    def tokens(self) -> TokenBook | None:
        auth = self.section.auth
        return TokenBook.load(self._path(auth.tokens_file), auth.tokens_env)

    def monitor_tokens(self) -> TokenBook | None:
        auth = self.section.auth
        return TokenBook.load(self._path(auth.monitor_tokens_file), auth.monitor_tokens_env, "monitor_tokens")

    def agent(self) -> Path | None:
        return self._path(self.section.agent)

    def tls(self) -> TlsFiles | None:
        tls = self.section.tls
        if tls is None:
            return None
        cert, key = self._path(tls.cert), self._path(tls.key)
        assert cert is not None and key is not None
        return TlsFiles(cert, key, self._path(tls.client_ca), self._path(tls.client_crl))

    def check_access(self, tokens: TokenBook | None, tls: TlsFiles | None) -> None:
        """Some client authentication, unless explicitly waived on a loopback address; and plain HTTP (API tokens
        and applicant data in clear) only on a loopback address, e.g. behind a TLS proxy on the same machine."""
        host = self.section.host
        loopback = host == "localhost" or _is_loopback(host)
        authenticated = tokens is not None or (tls is not None and tls.client_ca is not None)
        if not authenticated and not (self.section.auth.allow_unauthenticated and loopback):
            raise ConfigError(f"{self.source}: [serve.auth] configures no API tokens and [serve.tls] no client_ca: "
                              "anyone could score. Set tokens_file/tokens_env or client_ca (allow_unauthenticated = "
                              "true is accepted on a loopback host only)")
        if tls is None and not loopback:
            raise ConfigError(f"{self.source}: [serve] host {host!r} is not a loopback address and [serve.tls] is not "
                              "configured: API tokens and applicants would travel in clear. Configure [serve.tls] "
                              "(cert, key) or serve on 127.0.0.1 behind a TLS-terminating proxy on this machine")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_serve_config(path: Path) -> ServeConfig:
    """Parse ``path``'s `[serve]` section; every problem is one ConfigError naming the file and the field."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    if "serve" not in data:
        raise ConfigError(f"{path}: no [serve] section")
    try:
        section = ServeSection.model_validate(data["serve"])
    except ValidationError as exc:
        raise ConfigError(f"{path}: [serve] {problems(exc)}") from None
    return ServeConfig(section, Path(path).resolve().parent, str(Path(path).resolve()))
