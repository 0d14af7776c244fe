"""Sign-in through the bank's OpenID Connect provider: authorization-code flow with PKCE, state and nonce.

Why: a bank's staff already have an identity provider (with its own second factor, joiners and leavers); the
console should trust it rather than keep another password. An admin links an account to the provider's
(issuer, subject) (`Accounts.link_oidc`); a successful sign-in gives exactly the session a password sign-in
gives (`Accounts.create_session`, the same cookie), with the account's role. Nothing else about the identity
(e-mail, groups) grants anything: an unlinked subject is refused even if the provider vouches for it. Admins
link and unlink with `PUT`/`DELETE /api/v1/users/{id}/oidc` (`sampan.web.oidc_link`, audited).

The flow (authlib does the protocol; this module only wires it):
1. `GET /auth/oidc/login?next=...`: fresh `state`, `nonce` and PKCE `code_verifier` (authlib's generator, from
   `secrets`), sealed (AES-GCM, a key of this process) into an HttpOnly cookie (SameSite=Lax, so the
   provider's redirect back carries it; path /auth/oidc; ten minutes): no server-side table a flood of
   unauthenticated logins could fill; redirect to the provider's
   authorization endpoint (from its discovery document, whose `issuer` must be the configured one).
2. `GET /auth/oidc/callback?code&state`: the cookie must open and `state` must match it; the flow is taken
   once (a replayed callback is refused); the code is exchanged with the client secret and the verifier;
   the ID token's signature is checked against the provider's JWKS and its `iss`, `aud` (must list the
   client id), `exp`, `iat`, `nonce` (and `at_hash`) by authlib/joserfc; then (issuer, sub) must belong to
   an enabled, linked account.

Threat model: a network attacker or a malicious page cannot (a) sign a victim in as the attacker (login CSRF:
the callback needs the victim's own flow cookie and its state), (b) replay a code or an ID token from
another flow (nonce, single-use flow, PKCE), (c) pass off a token from another provider or for another
client (iss and aud), or (d) redirect the browser elsewhere after sign-in (`next` stays a local path).
A compromised identity provider can sign in as any linked account: it is trusted for exactly that.
The flow cookie's key lives in this process's memory (the control plane runs one process beside its
coordinator); a restart between the two steps asks the person to sign in again. The client secret comes
from a file (0600) or an environment variable, never from coordinator.toml. The issuer is compared exactly as
configured (keep a trailing '/' if the provider's issuer has one).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from sampan.errors import ConfigError
from sampan.web.api_auth import set_session_cookie
from sampan.web.errors import Invalid, Unauthenticated

__all__ = ["OidcSection", "OidcSettings", "OidcClient", "mount_oidc", "settings_from_config", "LOGIN_PATH",
           "CALLBACK_PATH", "FLOW_COOKIE"]

LOGIN_PATH = "/auth/oidc/login"
CALLBACK_PATH = "/auth/oidc/callback"
FLOW_COOKIE = "sampan_oidc_flow"
_FLOW_TTL_S = 600.0
_MAX_FLOWS = 10_000


class OidcSection(BaseModel):
    """`[control_plane.oidc]` of coordinator.toml (paths relative to it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(description="the provider's issuer URL (https; http only on loopback, for tests)")
    client_id: str = Field(min_length=1)
    client_secret_file: str | None = Field(None, description="file holding the client secret (0600)")
    client_secret_env: str | None = Field(None, description="environment variable holding the client secret")
    redirect_uri: str = Field(description="this console's callback as registered at the provider, ending in "
                              f"{CALLBACK_PATH}")
    scope: str = "openid"

    @model_validator(mode="after")
    def _one_secret_source(self) -> OidcSection:
        if (self.client_secret_file is None) == (self.client_secret_env is None):
            raise ValueError("set exactly one of client_secret_file or client_secret_env (never the secret itself)")
        return self


def _loopback_http(url: str) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        return parts.scheme == "http" and (host == "localhost" or ipaddress.ip_address(host).is_loopback)
    except ValueError:
        return False


@dataclass(frozen=True)
class OidcSettings:
    """What the relying party needs; `client_secret` is kept out of reprs."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    scope: str = "openid"
    timeout_s: float = 10.0
    cache_s: float = 3600.0  # discovery document and JWKS (a JWKS is re-read at once for an unknown key id)

    def __post_init__(self) -> None:
        for name in ("issuer", "redirect_uri"):
            url = getattr(self, name)
            if not (url.startswith("https://") or _loopback_http(url)):
                raise ConfigError(f"oidc.{name} = {url!r}: must be https:// (plain http only on a loopback address)")
        if "openid" not in self.scope.split():
            raise ConfigError(f"oidc.scope = {self.scope!r}: must include 'openid'")

    @classmethod
    def from_section(cls, section: OidcSection, *, source: str = "[control_plane.oidc]") -> OidcSettings:
        if section.client_secret_env is not None:
            secret = os.environ.get(section.client_secret_env, "")
            if not secret:
                raise ConfigError(f"{source} client_secret_env: ${section.client_secret_env} is not set")
        else:
            from sampan.files import InsecureFileError, check_private_mode

            path = Path(str(section.client_secret_file))
            try:
                check_private_mode(path, "OIDC client secret")
                secret = path.read_text(encoding="utf-8").strip()
            except (OSError, InsecureFileError) as exc:
                raise ConfigError(f"{source} client_secret_file: {exc}") from None
            if not secret:
                raise ConfigError(f"{source} client_secret_file {str(path)!r} is empty")
        return cls(section.issuer, section.client_id, secret, section.redirect_uri, section.scope)


def settings_from_config(data: dict[str, Any] | None, *, source: str) -> OidcSettings | None:
    """`[control_plane.oidc]` (already path-resolved) as settings, the secret read; None when absent."""
    if data is None:
        return None
    from pydantic import ValidationError

    from sampan.config import problems

    try:
        section = OidcSection.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {problems(exc)}") from None
    return OidcSettings.from_section(section, source=source)


@dataclass(frozen=True)
class _Flow:
    state: str
    nonce: str
    code_verifier: str
    next_path: str
    created: float


class _Flows:
    """Sign-ins in progress, each sealed into the browser's own flow cookie (AES-GCM under a key of this process).

    Why sealed rather than a server-side table: `GET /auth/oidc/login` needs no authentication, so any table of
    pending flows an outsider can fill is a table an outsider can empty (R14-ENT-8). A sealed cookie costs the
    server nothing per login; the browser holds its own flow, which nobody else can read (the PKCE verifier and
    nonce stay secret) or forge (GCM tag). Single use: once a callback's state matched, the flow's state is
    remembered until the flow would expire anyway, and a second callback with it is refused. That memory is
    capped at `_MAX_FLOWS` (oldest forgotten first); a replay of a forgotten flow still needs its authorization
    code, which the provider accepts once (RFC 6749 4.1.2), and its nonce. A restart makes a new key: pending
    sign-ins start again, as before."""

    _AAD = b"sampan-oidc-flow-v1"

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, flow: _Flow) -> str:
        """The cookie value: nonce || AES-GCM(flow as JSON)."""
        import base64
        import json

        data = json.dumps([flow.state, flow.nonce, flow.code_verifier, flow.next_path, flow.created]).encode()
        iv = os.urandom(12)
        return base64.urlsafe_b64encode(iv + self._aead.encrypt(iv, data, self._AAD)).decode().rstrip("=")

    def _open(self, value: str) -> _Flow | None:
        import base64
        import json

        from cryptography.exceptions import InvalidTag

        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            state, nonce, verifier, next_path, created = json.loads(self._aead.decrypt(raw[:12], raw[12:],
                                                                                       self._AAD))
            flow = _Flow(str(state), str(nonce), str(verifier), str(next_path), float(created))
        except (InvalidTag, ValueError, TypeError):
            return None
        return flow

    def take(self, flow_id: str | None, state: str | None) -> _Flow | None:
        """The flow, if its cookie is genuine, unexpired, its state matches, and it was not taken before."""
        if not flow_id or len(flow_id) > 4096:
            return None
        flow = self._open(flow_id)
        now = time.time()
        if flow is None or not 0 <= now - flow.created <= _FLOW_TTL_S:
            return None
        if state is None or not hmac.compare_digest(state.encode(), flow.state.encode()):
            raise Invalid("the sign-in's state does not match (a forged or replayed callback): start again",
                          "state")
        with self._lock:
            for key in [k for k, t in self._used.items() if now - t > _FLOW_TTL_S]:
                del self._used[key]
            if flow.state in self._used:
                return None
            while len(self._used) >= _MAX_FLOWS:
                del self._used[next(iter(self._used))]
            self._used[flow.state] = flow.created
        return flow


class OidcClient:
    """The relying party: discovery, authorization URL, code exchange and ID-token validation (authlib)."""

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._metadata: dict[str, Any] | None = None
        self._jwks: dict[str, Any] | None = None
        self._fetched = 0.0
        self._lock = threading.Lock()

    def _session(self) -> Any:
        from authlib.integrations.requests_client import OAuth2Session  # type: ignore[import-untyped]

        s = self.settings
        return OAuth2Session(s.client_id, s.client_secret, scope=s.scope, redirect_uri=s.redirect_uri,
                             code_challenge_method="S256", token_endpoint_auth_method="client_secret_basic")

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        import requests

        try:
            response = requests.get(url, timeout=self.settings.timeout_s, allow_redirects=False)
            response.raise_for_status()
            data = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise Unauthenticated(f"the identity provider's {what} cannot be read: {exc}") from None
        if not isinstance(data, dict):
            raise Unauthenticated(f"the identity provider's {what} is not a JSON object")
        return data

    def metadata(self, *, refresh: bool = False) -> dict[str, Any]:
        """The discovery document; its `issuer` must be exactly the configured issuer (mix-up defence)."""
        with self._lock:
            fresh = self._metadata is not None and time.monotonic() - self._fetched < self.settings.cache_s
            if fresh and not refresh:
                assert self._metadata is not None
                return self._metadata
        issuer = self.settings.issuer
        # the issuer is compared exactly as configured (some providers' issuers end in '/'); only the discovery
        # URL is built without a doubled slash (OpenID Connect Discovery 1.0, section 4)
        data = self._get_json(f"{issuer.rstrip('/')}/.well-known/openid-configuration", "discovery document")
        if data.get("issuer") != issuer:
            raise Unauthenticated(f"the discovery document at {issuer} names issuer {data.get('issuer')!r}, not "
                                  f"{issuer!r}")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(data.get(key), str):
                raise Unauthenticated(f"the identity provider's discovery document has no {key}")
        with self._lock:
            self._metadata, self._jwks, self._fetched = data, None, time.monotonic()
        return data

    def _key_set(self, refresh: bool) -> Any:
        from joserfc.jwk import KeySet

        with self._lock:
            cached = None if refresh else self._jwks
        if cached is None:
            cached = self._get_json(self.metadata()["jwks_uri"], "key set (JWKS)")
            with self._lock:
                self._jwks = cached
        return KeySet.import_key_set(cached)  # type: ignore[arg-type]

    def authorization(self, next_path: str) -> tuple[str, _Flow]:
        """The provider URL to send the browser to, and the flow to remember."""
        from authlib.common.security import generate_token  # type: ignore[import-untyped]

        flow = _Flow(state=generate_token(32), nonce=generate_token(32), code_verifier=generate_token(64),
                     next_path=next_path, created=time.time())
        url, _ = self._session().create_authorization_url(
            self.metadata()["authorization_endpoint"], state=flow.state, nonce=flow.nonce,
            code_verifier=flow.code_verifier)
        return url, flow

    def exchange(self, flow: _Flow, code: str) -> dict[str, Any]:
        """Code -> tokens at the token endpoint (client secret + PKCE verifier)."""
        from authlib.integrations.base_client.errors import OAuthError  # type: ignore[import-untyped]
        from authlib.oauth2.rfc6749.errors import OAuth2Error  # type: ignore[import-untyped]

        try:
            token = self._session().fetch_token(self.metadata()["token_endpoint"], grant_type="authorization_code",
                                                code=code, code_verifier=flow.code_verifier,
                                                timeout=self.settings.timeout_s)
        except (OAuthError, OAuth2Error) as exc:
            raise Unauthenticated(f"the identity provider refused the code: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - requests' errors and a malformed answer alike
            raise Unauthenticated(f"the code could not be exchanged at the identity provider: {exc}") from None
        if "id_token" not in token:
            raise Unauthenticated("the identity provider answered without an ID token (is 'openid' in scope?)")
        return dict(token)

    def validate(self, flow: _Flow, token: dict[str, Any]) -> dict[str, Any]:
        """The ID token's claims after authlib/joserfc checked signature, iss, aud, exp, iat, nonce and at_hash."""
        from authlib.oidc.core import CodeIDToken  # type: ignore[import-untyped]
        from joserfc import jwt
        from joserfc.errors import InvalidKeyIdError, JoseError
        from joserfc.jws import JWSRegistry

        algorithms = self.metadata().get("id_token_signing_alg_values_supported") or ["RS256"]
        registry = JWSRegistry(algorithms=[a for a in algorithms if a != "none"], strict_check_header=False)
        try:
            try:
                decoded = jwt.decode(token["id_token"], key=self._key_set(False), registry=registry)
            except InvalidKeyIdError:  # the provider rotated its keys
                decoded = jwt.decode(token["id_token"], key=self._key_set(True), registry=registry)
            claims = CodeIDToken(decoded.claims, decoded.header,
                                 {"iss": {"essential": True, "values": [self.settings.issuer]},
                                  # OIDC Core 3.1.3.7 (3): the console must be among the audiences; authlib
                                  # checks aud only when asked (azp alone would accept another client's token)
                                  "aud": {"essential": True, "values": [self.settings.client_id]}},
                                 {"nonce": flow.nonce, "client_id": self.settings.client_id,
                                  "access_token": token.get("access_token")})
            claims.validate(leeway=60)
        except (JoseError, ValueError) as exc:
            raise Unauthenticated(f"the ID token is not valid for this console: {exc}") from None
        return dict(claims)


def _safe_next(value: str | None) -> str:
    """A local path only (never another origin): '//evil', '/\\evil', 'https://evil' become '/'."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or len(value) > 500:
        return "/"
    if any(ch in value for ch in "\\\r\n\t") or ":" in value.split("?", 1)[0]:
        return "/"
    return value


def mount_oidc(app: Any, plane: Any, settings: OidcSettings) -> None:
    """Add /auth/oidc/login and /auth/oidc/callback to `app`; point the console's sign-in button at them."""
    client = OidcClient(settings)
    flows = _Flows()
    router = APIRouter(include_in_schema=False)

    @router.get(LOGIN_PATH)
    async def oidc_login(request: Request, next: str = "/") -> Response:  # noqa: A002 - the query name
        url, flow = await run_in_threadpool(client.authorization, _safe_next(next))
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(FLOW_COOKIE, flows.add(flow), max_age=int(_FLOW_TTL_S), path="/auth/oidc",
                            httponly=True, samesite="lax", secure=bool(request.app.state.secure_cookies))
        return response

    @router.get(CALLBACK_PATH)
    async def oidc_callback(request: Request, state: str | None = None, code: str | None = None,
                            error: str | None = None) -> Response:
        flow = flows.take(request.cookies.get(FLOW_COOKIE), state)
        if flow is None:
            raise Invalid("this sign-in was not started here, has expired or was used already: start again",
                          "state")
        if error is not None:
            raise Unauthenticated(f"the identity provider did not sign you in ({error[:100]})")
        if not code:
            raise Invalid("the identity provider's answer has no code", "code")

        def finish() -> Any:
            claims = client.validate(flow, client.exchange(flow, code))
            subject = str(claims.get("sub") or "")
            try:
                principal = plane.accounts.principal_for_oidc(settings.issuer, subject)
            except Unauthenticated:
                plane.audit(None, "oidc_refused", {"issuer": settings.issuer, "subject": subject[:200]})
                raise
            plane.audit(principal, "signed_in", {"method": "oidc", "issuer": settings.issuer})
            return plane.accounts.create_session(principal)

        session = await run_in_threadpool(finish)
        response = RedirectResponse(flow.next_path, status_code=303)
        set_session_cookie(response, session, plane.accounts, bool(request.app.state.secure_cookies))
        response.delete_cookie(FLOW_COOKIE, path="/auth/oidc")
        return response

    app.include_router(router)
    from sampan.web.oidc_link import link_router  # the admin's (audited) route to link accounts to subjects

    app.include_router(link_router(settings.issuer))
    console = getattr(app.state, "console", None)
    if console is not None:  # the console is mounted first: its sign-in page gets the button
        console.oidc_login_path = LOGIN_PATH
