"""Benchmark API v1 over HTTP: `make_benchmark_app(backend, token=...)` serves any PlatformBackend at /bench/v1.

The adapters write no HTTP: this module owns auth (one bearer token, compared in constant time), the version
header on every response, the one error envelope for every failure (validation, unknown route, the backend's
refusals, its bugs: never a traceback in a body), and the request size limit (413 before anything parses a body).
The token is checked from the headers alone, before a byte of the body is read, on every path (unknown routes
and openapi.json included): a caller without it costs the server no body buffering and no JSON parsing. An
authorised body is collected in one buffer (linear time, at most the limit), then parsed.
Handlers are synchronous, so FastAPI runs each backend call in a worker thread: a slow submit blocks no one.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sampan.verify.api import (
    API_VERSION,
    BASE_PATH,
    DEFAULT_MAX_BODY_BYTES,
    VERSION_HEADER,
    ErrorBody,
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
from sampan.verify.backend import BackendError, PlatformBackend

log = logging.getLogger("sampan.verify.server")
T = TypeVar("T")

_STATUS_CODE = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 413: "too_large"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": code} for status, code in
    ((401, "unauthorized"), (404, "not_found"), (409, "conflict"), (413, "too_large"),
     (422, "invalid or unsupported"), (500, "internal"))}


def error_response(code: str, message: str, status: int, field: str | None = None) -> JSONResponse:
    """The envelope every error uses: {"error": {"code", "message", "field"}}."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = {"error": {"code": code, "message": message, "field": field}}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_field(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if not str(p).startswith("function-")]
    if parts and parts[0] in ("body", "path", "query", "header"):
        parts = parts[1:]
    return ".".join(parts) or None


def _field_of(error: Any) -> str | None:
    """The dotted field of one validation error (None for a body that is not JSON: its loc is a position)."""
    if error.get("type") == "json_invalid":
        return None
    return _validation_field(tuple(error.get("loc", ())))


def _token_ok(header: str | bytes | None, expected: bytes) -> bool:
    """Whether an Authorization header value is ``Bearer <expected>`` (constant-time comparison)."""
    if header is None:
        return False
    raw = header.encode("latin-1") if isinstance(header, str) else header
    scheme, _, presented = raw.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(presented.strip(), expected)


class _Envelope:
    """Pure ASGI wrapper (outermost): the version header on every response, the bearer token, the body limit.

    The token is checked from the headers before any body is read (401 at once otherwise). A body over
    ``limit`` is refused 413 from its Content-Length, or once the streamed bytes pass the limit (chunked
    uploads), holding at most ``limit`` bytes in one growing buffer; the body is then replayed to the app."""

    def __init__(self, app: Any, limit: int, token: bytes) -> None:
        self.app, self.limit, self.token = app, limit, token

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_versioned(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != VERSION_HEADER.lower().encode()]
                message = {**message, "headers": [*headers, (VERSION_HEADER.lower().encode(), API_VERSION.encode())]}
            await send(message)

        headers = list(scope.get("headers") or [])
        presented = [value for name, value in headers if name.lower() == b"authorization"]
        if len(presented) != 1 or not _token_ok(presented[0], self.token):
            await _unauthorised(send_versioned)
            return
        length = dict(headers).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send_versioned)
            return
        buffer, more = bytearray(), scope.get("method") not in ("GET", "HEAD")
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            buffer += message.get("body", b"")  # in place: linear in the body, never a copy per chunk
            more = bool(message.get("more_body", False))
            if len(buffer) > self.limit:
                await self._refuse(send_versioned)
                return
        body = bytes(buffer)
        del buffer
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return dict(await receive())
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send_versioned)

    async def _refuse(self, send: Any) -> None:
        await _send_error(send, 413, "too_large", f"the request body is larger than {self.limit} bytes")


async def _unauthorised(send: Any) -> None:
    await _send_error(send, 401, "unauthorized", "missing or wrong bearer token (Authorization: Bearer <token>)",
                      [(b"www-authenticate", b"Bearer")])


async def _send_error(send: Any, status: int, code: str, message: str,
                      extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """An error envelope sent straight from the ASGI wrapper (the app never saw the request)."""
    detail = json.dumps({"error": {"code": code, "field": None, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(detail)).encode()),
               *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": detail})


def _call(what: str, fn: Callable[[], T]) -> T:
    """Run one backend call; a deliberate BackendError passes, anything else becomes `internal` (logged here,
    never shown: a traceback could carry a platform's data)."""
    try:
        return fn()
    except BackendError:
        raise
    except Exception:
        log.exception("benchmark backend failed in %s", what)
        raise BackendError("internal", f"the platform failed in {what} (see the platform's own log)") from None


def _router(backend: PlatformBackend) -> APIRouter:
    r = APIRouter(responses=_ERRORS, generate_unique_id_function=lambda route: route.name)

    @r.get("/info", response_model=PlatformInfo)
    def info() -> PlatformInfo:
        return _call("info", backend.info)

    @r.post("/projects", response_model=Project, status_code=201)
    def create_project(spec: ProjectCreate) -> Project:
        return _call("create_project", lambda: backend.create_project(spec))

    @r.post("/projects/{project_id}/parties", response_model=Party, status_code=201)
    def register_party(project_id: str, registration: PartyRegistration) -> Party:
        return _call("register_party", lambda: backend.register_party(project_id, registration))

    @r.post("/projects/{project_id}/jobs", response_model=Job, status_code=201)
    def submit_job(project_id: str, spec: TaskSpec) -> Job:
        return _call("submit_job", lambda: backend.submit_job(project_id, spec))

    @r.get("/jobs/{job_id}", response_model=Job)
    def job(job_id: str) -> Job:
        return _call("job", lambda: backend.job(job_id))

    @r.post("/jobs/{job_id}/cancel", response_model=Job)
    def cancel(job_id: str) -> Job:
        return _call("cancel", lambda: backend.cancel(job_id))

    @r.get("/jobs/{job_id}/results", response_model=JobResults)
    def results(job_id: str) -> JobResults:
        return _call("results", lambda: backend.results(job_id))

    @r.get("/jobs/{job_id}/model", response_model=ModelExport)
    def model(job_id: str) -> ModelExport:
        return _call("model", lambda: backend.model(job_id))

    @r.post("/jobs/{job_id}/evaluate", response_model=EvaluateResult)
    def evaluate(job_id: str, data: TableData) -> EvaluateResult:
        return _call("evaluate", lambda: backend.evaluate(job_id, data))

    @r.post("/jobs/{job_id}/predict", response_model=PredictResult)
    def predict(job_id: str, data: TableData) -> PredictResult:
        return _call("predict", lambda: backend.predict(job_id, data))

    return r


def make_benchmark_app(backend: PlatformBackend, *, token: str, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                       prefix: str = BASE_PATH, title: str | None = None) -> FastAPI:
    """The FastAPI app serving ``backend`` at ``prefix`` (/bench/v1) behind bearer ``token``; every response
    carries the version header and bodies over ``max_body_bytes`` get 413. To put it inside another app (the
    control plane), build it with ``prefix=""`` and ``outer.mount("/bench/v1", app)``."""
    if not token:
        raise ValueError("make_benchmark_app: a bearer token is required (the API is never served open)")
    if max_body_bytes < 1024:
        raise ValueError("make_benchmark_app: max_body_bytes must be at least 1024")
    expected = token.encode()

    def authorised(request: Request) -> None:  # again, behind the wrapper's check (defence in depth)
        if not _token_ok(request.headers.get("authorization"), expected):
            raise BackendError("unauthorized", "missing or wrong bearer token (Authorization: Bearer <token>)")

    app = FastAPI(title=title or "Sampan Benchmark API", version=API_VERSION,
                  description="The control plane a federated-learning platform under test exposes to Sampan's "
                              "verifier (docs/verification/api.md).",
                  docs_url=None, redoc_url=None, openapi_url=f"{prefix}/openapi.json")
    app.include_router(_router(backend), prefix=prefix, dependencies=[Depends(authorised)])

    @app.exception_handler(BackendError)
    async def _backend_error(_: Request, exc: BackendError) -> JSONResponse:
        return error_response(exc.code, exc.message, exc.status, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        first = errors[0] if errors else {}
        messages = [f"{_field_of(e) or '(body)'}: "
                    f"{str(e.get('msg', '')).removeprefix('Value error, ')}" for e in errors[:5]]
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        return error_response("invalid", "; ".join(messages) + more, 422,
                              _field_of(first) if first else None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODE.get(exc.status_code, "internal" if exc.status_code >= 500 else "invalid")
        message = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
        return error_response(code, message, exc.status_code)

    @app.exception_handler(ResponseValidationError)
    async def _bad_response(_: Request, exc: ResponseValidationError) -> JSONResponse:
        log.error("benchmark backend returned a malformed response: %s", exc.errors()[:3])
        return error_response("internal", "the platform returned a malformed response", 500)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("benchmark API failed: %s", type(exc).__name__)
        response = error_response("internal", "internal error", 500)
        response.headers[VERSION_HEADER] = API_VERSION  # this one is sent outside the version middleware
        return response

    app.add_middleware(_Envelope, limit=max_body_bytes, token=expected)
    return app


def openapi_document(backend: PlatformBackend | None = None) -> dict[str, Any]:
    """The OpenAPI document of Benchmark API v1 (docs/verification/openapi.json is generated from this)."""
    app = make_benchmark_app(backend or _NoBackend(), token="openapi")
    document: dict[str, Any] = app.openapi()
    document.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    document["security"] = [{"bearer": []}]
    return document


class _NoBackend:
    """A backend that only exists so the OpenAPI document can be built (every call refuses)."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def refuse(*_: Any) -> Any:
            raise BackendError("unsupported", f"{name}: no backend")
        return refuse


__all__ = ["make_benchmark_app", "openapi_document", "error_response"]
