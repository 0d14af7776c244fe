"""BenchmarkClient: the verifier's side of Benchmark API v1 (httpx, TLS/mTLS, typed results, clear errors).

Every call checks the server's `X-Bench-API-Version` header (the major must equal ours: a 2.x server may mean
something else by the same field) and parses the body into the api.py models, so a platform that answers
off-contract gets a `VerifyError` naming the endpoint and the field, never a KeyError deep in a test. `raw()`
sends anything (no token, malformed bodies, huge bodies) for the tests that probe the API's own checks.

The platform is not trusted with the verifier's resources: a response body is streamed and refused past
MAX_RESPONSE_BYTES (error bodies are cut at MAX_ERROR_BYTES), and ``timeout`` bounds the whole call (checked
between the chunks read; one silent read can add up to ``timeout`` more, so a call ends within about twice
``timeout``; the headers themselves are bounded by httpx's per-read timeout and h11's 16 KiB header limit). Error
codes outside the API's closed list (the client's own ``timeout``, ``tls``... included) are `bad_response`,
messages are cut to MAX_MESSAGE characters, NaN/Infinity in answers are refused, exactly one version header
"major.minor" is accepted, and an answer about another job or project than the one asked for is refused.
`sampan.verify.bounded` holds the reading and URL rules, shared with the catalogue's raw `Api`. A plain
``http://`` URL to a host other than loopback sends the bearer token in clear: ``plain_http`` says whether that
is allowed, logged ("warn", the default) or refused. The client connects wherever ``base_url`` says (no
allow-list of hosts: that is the caller's job).
"""

from __future__ import annotations

import json as jsonlib
import re
import ssl
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from sampan.errors import PartyError, user_message
from sampan.verify.api import (
    API_VERSION,
    BASE_PATH,
    ERROR_STATUS,
    VERSION_HEADER,
    EvaluateResult,
    Job,
    JobResults,
    ModelExport,
    Party,
    PartyRegistration,
    PlatformInfo,
    PredictResult,
    Project,
    ProjectCreate,
    TableData,
    TaskSpec,
)
from sampan.verify.bounded import PlainHttp, ResponseRefused, plaintext_token_check, read_bounded

M = TypeVar("M", bound=BaseModel)
MAX_MESSAGE = 500
_VERSION = re.compile(r"^[0-9]{1,4}\.[0-9]{1,4}$")


class VerifyError(PartyError):
    """The platform under test refused, failed, was unreachable or answered off-contract.

    ``code`` is the API error code the platform sent (``not_found``, ``conflict``, ...) or one of the client's
    own: ``unreachable``, ``tls``, ``timeout``, ``version``, ``bad_response``."""

    category = "platform under test"

    def __init__(self, endpoint: str, message: str, *, code: str, status: int | None = None,
                 field: str | None = None) -> None:
        where = f" (field {field})" if field else ""
        super().__init__(f"{endpoint}: {code}: {message}{where}")
        self.endpoint, self.code, self.status, self.field, self.detail = endpoint, code, status, field, message


def major(version: str) -> str:
    """The major part of "major.minor" (the whole string if it has no dot)."""
    return version.split(".", 1)[0].strip()


def client_ssl_context(*, ca_pem: str | None = None, verify: bool = True,
                       client_cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    """A TLS context for the client: trust ``ca_pem`` (else the system store), or nothing checked when
    ``verify`` is False (only for the tests that must reach a misconfigured server); ``client_cert`` =
    (cert file, key file) for mTLS."""
    if verify:
        ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert is not None:
        ctx.load_cert_chain(client_cert[0], client_cert[1])
    return ctx


class BenchmarkClient:
    """Typed calls to one platform's Benchmark API at ``base_url`` (its root or its /bench/v1 URL)."""

    def __init__(self, base_url: str, token: str, *, ca_pem: str | None = None, verify: bool = True,
                 client_cert: tuple[str, str] | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None, plain_http: PlainHttp = "warn") -> None:
        root = base_url.rstrip("/")
        self.base_url = root if root.endswith(BASE_PATH) else root + BASE_PATH
        plaintext_token_check(self.base_url, plain_http, "BenchmarkClient")
        self.token, self.timeout = token, timeout
        tls = client_ssl_context(ca_pem=ca_pem, verify=verify, client_cert=client_cert)
        self._http = httpx.Client(base_url=self.base_url, verify=tls, timeout=timeout, transport=transport,
                                  headers={"Accept": "application/json"})
        self.server_version: str | None = None

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BenchmarkClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def raw(self, method: str, path: str, *, json: Any = None, content: bytes | None = None,
            headers: dict[str, str] | None = None, auth: bool = True, token: str | None = None) -> httpx.Response:
        """Send one request as is and return the response unchecked (``auth=False``: no Authorization header;
        ``token``: a different one). Transport failures still raise VerifyError."""
        sent = dict(headers or {})
        if auth:
            sent["Authorization"] = f"Bearer {token if token is not None else self.token}"
        endpoint = f"{method.upper()} {path}"
        try:
            return read_bounded(self._http, method, path, seconds=self.timeout, json=json, content=content,
                                headers=sent)
        except ResponseRefused as exc:
            code = "timeout" if exc.code == "timeout" else "bad_response"
            raise VerifyError(endpoint, f"{self.base_url}: {exc}", code=code) from None
        except httpx.ConnectError as exc:
            code = "tls" if _is_tls(exc) else "unreachable"
            raise VerifyError(endpoint, f"cannot connect to {self.base_url}: {exc}", code=code) from None
        except httpx.TimeoutException as exc:
            raise VerifyError(endpoint, f"no answer from {self.base_url} in time: {exc}", code="timeout") from None
        except httpx.HTTPError as exc:
            code = "tls" if _is_tls(exc) else "unreachable"
            raise VerifyError(endpoint, f"{type(exc).__name__}: {exc}", code=code) from None

    def _check_version(self, endpoint: str, response: httpx.Response) -> None:
        versions = response.headers.get_list(VERSION_HEADER)
        if not versions:
            raise VerifyError(endpoint, f"the answer has no {VERSION_HEADER} header: is this a Benchmark API?",
                              code="version", status=response.status_code)
        version = versions[0].strip()
        if len(versions) != 1 or not _VERSION.match(version):
            shown = ", ".join(repr(v[:20]) for v in versions[:3])
            raise VerifyError(endpoint, f"the answer needs exactly one {VERSION_HEADER} header \"major.minor\", "
                              f"not {shown}", code="version", status=response.status_code)
        if major(version) != major(API_VERSION):
            raise VerifyError(endpoint, f"the platform speaks Benchmark API {version}, this verifier {API_VERSION}"
                              " (the major versions must match)", code="version", status=response.status_code)
        self.server_version = version

    def _call(self, method: str, path: str, model: type[M], body: BaseModel | None = None) -> M:
        endpoint = f"{method} {path}"
        payload = body.model_dump(mode="json") if body is not None else None
        response = self.raw(method, path, json=payload)
        self._check_version(endpoint, response)
        if response.status_code >= 400:
            raise _api_error(endpoint, response)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            errors = exc.errors()
            field = ".".join(str(p) for p in errors[0]["loc"]) or None if errors else None
            raise VerifyError(endpoint, f"the answer is not a valid {model.__name__}: "
                              f"{_cut(user_message(exc))}", code="bad_response", status=response.status_code,
                              field=field) from None

    def _same(self, endpoint: str, what: str, asked: str, answered: str) -> None:
        """An answer must be about what was asked (a platform must not serve another job's results)."""
        if answered != asked:
            raise VerifyError(endpoint, f"asked about {what} {asked!r}, the answer is about {answered!r}",
                              code="bad_response", field=what)

    # ------------------------------------------------------------------ the API
    def info(self) -> PlatformInfo:
        info = self._call("GET", "/info", PlatformInfo)
        if major(info.api_version) != major(API_VERSION):
            raise VerifyError("GET /info", f"the platform reports api_version {info.api_version}, this verifier "
                              f"speaks {API_VERSION}", code="version", field="api_version")
        return info

    def create_project(self, name: str, ca_pem: str | None = None) -> Project:
        return self._call("POST", "/projects", Project, ProjectCreate(name=name, ca_pem=ca_pem))

    def register_party(self, project_id: str, registration: PartyRegistration) -> Party:
        return self._call("POST", f"/projects/{project_id}/parties", Party, registration)

    def submit_job(self, project_id: str, spec: TaskSpec) -> Job:
        job = self._call("POST", f"/projects/{project_id}/jobs", Job, spec)
        self._same(f"POST /projects/{project_id}/jobs", "project_id", project_id, job.project_id)
        return job

    def job(self, job_id: str) -> Job:
        job = self._call("GET", f"/jobs/{job_id}", Job)
        self._same(f"GET /jobs/{job_id}", "job_id", job_id, job.job_id)
        return job

    def cancel(self, job_id: str) -> Job:
        job = self._call("POST", f"/jobs/{job_id}/cancel", Job)
        self._same(f"POST /jobs/{job_id}/cancel", "job_id", job_id, job.job_id)
        return job

    def results(self, job_id: str) -> JobResults:
        results = self._call("GET", f"/jobs/{job_id}/results", JobResults)
        self._same(f"GET /jobs/{job_id}/results", "job_id", job_id, results.job_id)
        return results

    def model(self, job_id: str) -> ModelExport:
        return self._call("GET", f"/jobs/{job_id}/model", ModelExport)

    def evaluate(self, job_id: str, data: TableData) -> EvaluateResult:
        return self._call("POST", f"/jobs/{job_id}/evaluate", EvaluateResult, data)

    def predict(self, job_id: str, data: TableData) -> PredictResult:
        result = self._call("POST", f"/jobs/{job_id}/predict", PredictResult, data)
        if len(result.scores) != len(data.rows):
            raise VerifyError(f"POST /jobs/{job_id}/predict", f"{len(result.scores)} scores for {len(data.rows)} "
                              "rows", code="bad_response", field="scores")
        return result

    def wait_for(self, job_id: str, timeout: float, *, progress: Callable[[Job], None] | None = None,
                 poll: float = 0.2) -> Job:
        """Poll until the job is done (any final state: the caller judges it) and return it; ``progress`` gets
        every Job seen whose state or round changed. VerifyError(code="timeout") after ``timeout`` seconds (the
        job is left running: cancel it if you mean to)."""
        deadline = time.monotonic() + timeout
        last: tuple[str, int] | None = None
        delay = min(poll, 0.05)
        while True:
            job = self.job(job_id)
            if progress is not None and (job.state, job.round) != last:
                progress(job)
            last = (job.state, job.round)
            if job.done:
                return job
            if time.monotonic() >= deadline:
                raise VerifyError(f"GET /jobs/{job_id}", f"the job is still {job.state} (round {job.round}/"
                                  f"{job.rounds}) after {timeout:g} s", code="timeout")
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(poll, delay * 2)


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "SSL" in str(exc) or "certificate" in str(exc).lower()


def _cut(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def _api_error(endpoint: str, response: httpx.Response) -> VerifyError:
    """The platform's error envelope as a VerifyError (or a bad_response one if the envelope is off-contract or
    its code is not one the API defines: the client's own codes never come from a platform)."""
    try:
        body = jsonlib.loads(response.content, parse_constant=_not_json)
        error = body["error"]
        code, message, field = str(error["code"]), str(error["message"]), error.get("field")
    except (ValueError, KeyError, TypeError, RecursionError):
        return VerifyError(endpoint, f"HTTP {response.status_code} without the error envelope: "
                           f"{response.content[:200]!r}", code="bad_response", status=response.status_code)
    if code not in ERROR_STATUS:
        return VerifyError(endpoint, f"HTTP {response.status_code} with an error code the API does not define: "
                           f"{_cut(code, 40)!r} ({_cut(message)})", code="bad_response", status=response.status_code)
    return VerifyError(endpoint, _cut(message), code=code, status=response.status_code,
                       field=_cut(str(field), 200) if field is not None else None)


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


__all__ = ["BenchmarkClient", "VerifyError", "client_ssl_context", "major"]
