"""The verifier's raw HTTP view of a platform: every call returns status, body and headers.

The catalogue needs the raw view (it judges status codes and error bodies, sends malformed and oversized
requests, wrong tokens), so it does not go through a client that turns errors into exceptions. It reads with
the same protections as BenchmarkClient (`sampan.verify.bounded`): an answer over MAX_RESPONSE_BYTES is refused
(error answers are cut at MAX_ERROR_BYTES), ``timeout_s`` bounds the whole call (checked between chunks), and a
transport failure, an oversized or endless answer is an ApiCallError naming the call (never an httpx error). A
body with NaN/Infinity, or nested too deep to parse, decodes to None (it is not JSON). A plain-http URL to a
host other than loopback is logged (``plain_http="refuse"`` refuses it: the token would travel in clear).
With ``egress`` (the portal's `sampan.verify.egress.EgressPolicy`) the URL's host is resolved once, checked and
pinned: every call goes to that address (Host, SNI and certificate check on the name), and ``egress`` is what the
catalogue's other connections consult (`connect_host`, the data plane's proxy). httpx is imported here only.
"""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sampan.errors import SampanError

if TYPE_CHECKING:
    from sampan.verify.bounded import PlainHttp
    from sampan.verify.egress import EgressPolicy

__all__ = ["Api", "ApiCallError", "Reply", "TargetTLS"]


class ApiCallError(SampanError):
    """A platform answered a call the verifier needed with an error (names the call and the code)."""


@dataclass(frozen=True)
class TargetTLS:
    """How the verifier reaches the platform's control plane: the CA it trusts, and its own client cert."""

    ca_file: str | None = None  # None with an https URL: the system's CAs
    verify: bool = True
    cert_file: str | None = None
    key_file: str | None = None


@dataclass
class Reply:
    """One HTTP answer; ``body`` is the decoded JSON (None when the body is not JSON)."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error_code(self) -> str | None:
        err = self.body.get("error") if isinstance(self.body, dict) else None
        return err.get("code") if isinstance(err, dict) else None


class Api:
    """Calls ``{url}/bench/v1{path}`` with the bearer token (or another one, for the access tests)."""

    def __init__(self, url: str, token: str, tls: TargetTLS | None = None, *, timeout_s: float = 60.0,
                 plain_http: PlainHttp = "warn", egress: EgressPolicy | None = None) -> None:
        import httpx

        from sampan.verify.bounded import plaintext_token_check

        self.url = url.rstrip("/")
        self.base = self.url + "/bench/v1"
        plaintext_token_check(self.base, plain_http, "the verifier")
        self.token, self.timeout_s = token, timeout_s
        tls = tls or TargetTLS()
        verify: Any = tls.verify
        if tls.verify and (tls.ca_file or tls.cert_file):
            verify = ssl.create_default_context(cafile=tls.ca_file)
            if tls.cert_file and tls.key_file:
                verify.load_cert_chain(tls.cert_file, tls.key_file)
        self.egress, self.pinned = egress, None
        transport = None
        if egress is not None:  # resolve once, refuse internal addresses, connect only to the pinned one
            from sampan.verify.egress import pinned_transport

            self.pinned = egress.pin(self.base)
            transport = pinned_transport(self.pinned, verify=verify)
        self._client = httpx.Client(verify=verify, timeout=timeout_s, transport=transport)

    @property
    def connect_host(self) -> str:
        """Where a raw connection to the control plane goes: the pinned address, else the URL's host."""
        from urllib.parse import urlsplit

        return self.pinned.ip if self.pinned is not None else (urlsplit(self.url).hostname or "127.0.0.1")

    def close(self) -> None:
        self._client.close()

    def call(self, method: str, path: str, body: Any = None, *, content: bytes | None = None,
             token: str | None = "", headers: dict[str, str] | None = None) -> Reply:
        """``token=""`` uses the target's token, ``None`` sends none, any other string is sent instead."""
        import httpx

        from sampan.verify.bounded import ResponseRefused, read_bounded

        hdrs = dict(headers or {})
        use = self.token if token == "" else token
        if use is not None:
            hdrs["Authorization"] = f"Bearer {use}"
        if body is not None and content is None:
            content = json.dumps(body).encode()
        if content is not None:
            hdrs.setdefault("Content-Type", "application/json")
        start = time.perf_counter()
        try:
            response = read_bounded(self._client, method, self.base + path, seconds=self.timeout_s,
                                    content=content, headers=hdrs)
        except ResponseRefused as exc:
            raise ApiCallError(f"{method} {path}: {exc}") from None
        except httpx.HTTPError as exc:
            raise ApiCallError(f"{method} {path}: cannot get an answer from {self.url} "
                               f"({type(exc).__name__}: {exc})") from None
        seconds = time.perf_counter() - start
        return Reply(response.status_code, _decode(response.content),
                     {k.lower(): v for k, v in response.headers.items()}, seconds)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON of a call that must succeed; otherwise an ApiCallError naming the call and the error."""
        reply = self.call(method, path, body)
        if not reply.ok:
            err = reply.body.get("error", {}) if isinstance(reply.body, dict) else {}
            msg = err.get("message", "") if isinstance(err, dict) else ""
            field_ = err.get("field") if isinstance(err, dict) else None
            raise ApiCallError(f"{method} {path} answered {reply.status} {reply.error_code or ''}: {msg}"
                               + (f" (field {field_})" if field_ else ""))
        return reply.body


def _decode(content: bytes) -> Any:
    """The JSON of a body, or None: not JSON, NaN/Infinity (not JSON either), or nested past the parser's depth."""
    try:
        return json.loads(content, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return None


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")
