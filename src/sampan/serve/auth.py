"""Who may call the scoring service: API tokens (stored hashed) and/or mTLS client certificates.

Why hashed tokens: the token file (or environment variable) the bank keeps beside the service must not
let whoever reads it call the service. Tokens are long random strings (`new_token`), so one SHA-256 is
enough (no password stretching); a presented token is hashed and compared with every stored hash in
constant time (`hmac.compare_digest`), so neither the timing nor the order of the entries says which
prefix matched.

mTLS: uvicorn's TLS context requires a client certificate (``CERT_REQUIRED``) issued by the bank's CA for
its scoring clients; a client without one is refused in the TLS handshake, before any HTTP is read. The CA's
CRL (``client_crl``, by default ``crl.pem`` beside the CA certificate, as `sampan certs` keeps it) is checked
for the client's certificate (``VERIFY_CRL_CHECK_LEAF``, review R13-SRV-10): a revoked client is refused in
the handshake. The CRL is read when the service starts: after `sampan certs revoke` / `sampan certs crl`
(refresh it before it expires: an expired CRL refuses every client), restart the service.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sampan.errors import ConfigError

__all__ = ["TokenBook", "TlsFiles", "new_token", "token_hash", "uvicorn_tls"]

_PREFIX = "sha256:"


def token_hash(token: str) -> str:
    """The at-rest form of a token: ``sha256:<hex>``."""
    return _PREFIX + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh API token (256 bits from the OS generator)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TokenBook:
    """Client name -> token hash. ``check`` answers the client's name, or None for an unknown token."""

    hashes: Mapping[str, str]

    def check(self, token: str | None) -> str | None:
        if not token:
            return None
        presented = token_hash(token).encode()
        found = None
        for client, stored in self.hashes.items():  # every entry compared: no early exit
            if hmac.compare_digest(presented, stored.encode()):
                found = client
        return found

    @classmethod
    def parse(cls, text: str, source: str) -> TokenBook:
        """Lines (or comma-separated entries) ``client:sha256:<hex>``; ``#`` starts a comment."""
        hashes: dict[str, str] = {}
        entries = [e.strip() for line in text.splitlines() for e in line.split("#", 1)[0].split(",")]
        for number, entry in enumerate((e for e in entries if e), start=1):
            client, sep, stored = entry.partition(":")
            digest = stored.removeprefix(_PREFIX)
            if not sep or not client or not stored.startswith(_PREFIX) or len(digest) != 64 \
                    or any(c not in "0123456789abcdef" for c in digest):
                raise ConfigError(f"{source}: entry {number} is not 'client:sha256:<64 hex>' (store token hashes, "
                                  "never tokens: `sampan serve token CLIENT` prints one and its line)")
            if client in hashes:
                raise ConfigError(f"{source}: client {client!r} is listed twice")
            hashes[client] = stored
        return cls(hashes)

    @classmethod
    def load(cls, file: Path | None, env: str | None, field: str = "tokens") -> TokenBook | None:
        """The hashes from the token file and/or the environment variable; None when neither is configured.
        ``field``: the config keys' prefix (``tokens``, ``monitor_tokens``) the errors name."""
        if file is None and env is None:
            return None
        hashes: dict[str, str] = {}
        if file is not None:
            try:
                hashes.update(cls.parse(Path(file).read_text(encoding="utf-8"), f"token file {file}").hashes)
            except OSError as exc:
                raise ConfigError(f"[serve.auth] {field}_file {file}: cannot be read ({exc.strerror})") from None
        if env is not None:
            if env not in os.environ:
                raise ConfigError(f"[serve.auth] {field}_env: environment variable {env} is not set")
            hashes.update(cls.parse(os.environ[env], f"environment variable {env}").hashes)
        if not hashes:
            raise ConfigError(f"[serve.auth] {field}: the token file/variable lists no client")
        return cls(hashes)


@dataclass(frozen=True)
class TlsFiles:
    """The service's certificate and key, and (for mTLS) the CA that issues the scoring clients' certificates."""

    cert: Path
    key: Path
    client_ca: Path | None = None
    client_crl: Path | None = None  # default: crl.pem beside client_ca (where `sampan certs` writes it), if there

    def crl(self) -> Path | None:
        """The client CA's CRL to check, if any."""
        if self.client_crl is not None or self.client_ca is None:
            return self.client_crl
        beside = Path(self.client_ca).parent / "crl.pem"
        return beside if beside.is_file() else None

    def check(self) -> None:
        for field, path in (("cert", self.cert), ("key", self.key), ("client_ca", self.client_ca),
                            ("client_crl", self.client_crl)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"[serve.tls] {field}: no file at {path}")
        try:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.cert), str(self.key))
            self.verify_clients(context)
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"[serve.tls]: the certificate, key, client CA or CRL cannot be loaded ({exc})") from None

    def verify_clients(self, context: ssl.SSLContext) -> ssl.SSLContext:
        """The client CA, and its CRL checked for every client certificate (a revoked one fails the handshake)."""
        if self.client_ca is not None:
            context.load_verify_locations(str(self.client_ca))
        crl = self.crl()
        if crl is not None:
            context.load_verify_locations(str(crl))
            context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        return context


def uvicorn_tls(tls: TlsFiles | None) -> dict[str, Any]:
    """uvicorn's ssl keyword arguments: TLS, and client certificates required when a client CA is set."""
    if tls is None:
        return {}
    tls.check()
    kwargs: dict[str, Any] = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}
    if tls.client_ca is not None:
        kwargs.update(ssl_ca_certs=str(tls.client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED,
                      ssl_context_factory=lambda config, default: tls.verify_clients(default()))
    return kwargs
