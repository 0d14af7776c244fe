"""The FastAPI app of `sampan serve`: POST /v1/score, GET /v1/health, /v1/model, /v1/monitoring (+ /v1/noop).

Why one factory taking a backend: the same routes serve a horizontal model (scored here) and a vertical one
(the long-lived session with the partners); tests and the benchmark build the app without uvicorn.
Access is checked per request (API token) on top of whatever TLS enforced (mTLS client certificates).
The access log is one JSON line per request: time, method, path, status, milliseconds, client name and
the number of applicants, never an id, a feature or a score.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sampan.errors import DataError
from sampan.serve.auth import TokenBook
from sampan.serve.backends import ScoringBackend
from sampan.serve.schemas import Health, ModelDescription, Monitoring, ScoreRequest, ScoreResponse

__all__ = ["AccessLog", "create_app", "ServiceStats"]

access_log = logging.getLogger("sampan.serve.access")


@dataclass
class ServiceStats:
    """Bank-local counters for /v1/monitoring (nothing here leaves the bank).

    Decisions, score bands and drift are published once per ``every`` scored requests, not live: a monitoring
    reader comparing readings taken around one request would otherwise learn that applicant's decision and
    score band. Request, applicant and error counts and latencies say nothing about an applicant's score."""

    requests: int = 0
    applicants: int = 0
    every: int = 100
    errors: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    bands: Counter[str] = field(default_factory=Counter)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    scored_requests: int = 0
    published: dict[str, Any] = field(default_factory=lambda: {"published_after": 0, "decisions": {},
                                                               "score_bands": {}, "drift": None})

    def scored(self, results: list[dict[str, Any]]) -> bool:
        """Count one answered request; True when a block of ``every`` requests is complete (publish then)."""
        self.applicants += len(results)
        for r in results:
            self.decisions[r["decision"] or "none"] += 1
            low = int(r["score"] // 20 * 20)
            self.bands[f"{low}-{low + 20}"] += 1
        self.scored_requests += 1
        return self.scored_requests % self.every == 0

    def publish(self, drift: dict[str, Any] | None) -> None:
        self.published = {"published_after": self.scored_requests, "decisions": dict(self.decisions),
                          "score_bands": dict(sorted(self.bands.items())), "drift": drift}

    def percentiles(self) -> dict[str, float]:
        ordered = sorted(self.latencies)
        if not ordered:
            return {}
        return {f"p{round(q * 100)}": round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)
                for q in (0.5, 0.99)}


class AccessLog:
    """Pure ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware): the access-log line and the score
    counters, from the status sent and what the route left in ``scope["state"]`` (client, applicants)."""

    def __init__(self, app: Any, stats: ServiceStats) -> None:
        self.app, self.stats = app, stats

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        begin = time.perf_counter()
        status = [500]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._record(scope, status[0], (time.perf_counter() - begin) * 1000)

    def _record(self, scope: dict[str, Any], status: int, ms: float) -> None:
        path = scope.get("path", "")
        if path == "/v1/score":
            self.stats.requests += 1
            self.stats.latencies.append(ms)
            if status >= 400:
                self.stats.errors[str(status)] += 1
        if access_log.isEnabledFor(logging.INFO):
            state = scope.get("state") or {}
            access_log.info(json.dumps({"t": round(time.time(), 3), "method": scope.get("method"), "path": path,
                                        "status": status, "ms": round(ms, 2), "client": state.get("client"),
                                        "applicants": state.get("applicants")}))


class BodyLimit:
    """Pure ASGI middleware: a request body over ``limit`` bytes is answered 413 before anything parses it
    (R13-SRV-7); the body is read here (at most ``limit`` bytes held) and replayed to the app."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            await self._refuse(send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.limit:
                await self._refuse(send)
                return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return dict(await receive())
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        detail = json.dumps({"detail": f"the request body is larger than {self.limit} bytes ([serve] "
                                       "max_body_bytes)"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(detail)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": detail})


def create_app(backend: ScoringBackend, *, tokens: TokenBook | None = None, mtls: bool = False,
               monitoring: Callable[[], dict[str, Any] | None] | None = None,
               observe: Callable[[list[float]], None] | None = None, monitor_tokens: TokenBook | None = None,
               monitor_every: int = 100, max_body_bytes: int = 1 << 20) -> FastAPI:
    """The service for ``backend``. ``tokens``: API tokens required (Bearer); ``mtls``: TLS already demanded a
    client certificate (recorded in the access log); neither: refused unless the caller meant it (the CLI
    allows that only on loopback). ``monitoring``: extra /v1/monitoring content (`sampan.monitoring`);
    ``observe``: gets the PDs of each answered request (bank-local drift counters). ``monitor_tokens``: the
    only tokens /v1/monitoring accepts (none: it answers 403); its score counters refresh once per
    ``monitor_every`` scored requests (`ServiceStats`). ``max_body_bytes``: larger request bodies get 413."""
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        backend.close()  # the vertical session's driver stops with the server

    app = FastAPI(title="Sampan scoring service", version="1", lifespan=lifespan,
                  description="Scores loan applicants with a federated model held at this bank. Vertical models "
                              "reach the partners through the coordinator relay; scores never leave the bank.")
    stats = ServiceStats(every=monitor_every)
    started = time.monotonic()
    bearer = HTTPBearer(auto_error=False)

    async def client(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        if tokens is None:
            name = "mtls" if mtls else "anonymous"
        else:
            found = tokens.check(credentials.credentials if credentials is not None else None)
            if found is None:
                raise HTTPException(401, "a valid API token is required (Authorization: Bearer <token>)",
                                    headers={"WWW-Authenticate": "Bearer"})
            name = found
        request.state.client = name
        return name

    async def monitor_client(request: Request,
                             credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        if monitor_tokens is None:
            raise HTTPException(403, "monitoring is read with a monitor token ([serve.auth] monitor_tokens_file or "
                                "monitor_tokens_env); none is configured")
        presented = credentials.credentials if credentials is not None else None
        found = monitor_tokens.check(presented)
        if found is None:
            if tokens is not None and tokens.check(presented) is not None:
                raise HTTPException(403, "a scoring token does not read monitoring (use a monitor token)")
            raise HTTPException(401, "a valid monitor token is required (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})
        request.state.client = found
        return found

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.post("/v1/score", response_model=ScoreResponse, summary="Score one applicant or a batch")
    async def score(body: ScoreRequest, request: Request, who: str = Depends(client)) -> Response:
        rows = [a.model_dump() for a in body.applicants]
        request.state.applicants = len(rows)
        try:
            results = await backend.score_async(rows)
        except (DataError, ValueError) as exc:
            raise DataError(str(exc)) from None
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            raise HTTPException(503, f"the scoring session with the partners is not answering ({exc})") from None
        if observe is not None:
            observe([r["probability_of_default"] for r in results])
        if stats.scored(results):  # a complete block: decisions, bands and drift become readable
            stats.publish(monitoring() if monitoring else None)
        answer = {"model": backend.info.name, "version": backend.info.version, "results": results}
        return Response(json.dumps(answer, allow_nan=False), media_type="application/json")  # no re-validation

    @app.get("/v1/health", response_model=Health, summary="Liveness and the model served")
    async def health() -> dict[str, Any]:
        session = getattr(backend, "session", None)
        degraded = session is not None and getattr(session, "last_error", None) is not None
        return {"status": "degraded" if degraded else "ok", "uptime_s": time.monotonic() - started,
                "model": backend.info.name}

    @app.get("/v1/model", response_model=ModelDescription, summary="The model served: name, version, format, "
             "threshold")
    async def model(who: str = Depends(client)) -> dict[str, Any]:
        return dict(backend.info.__dict__)

    @app.get("/v1/monitoring", response_model=Monitoring, summary="Service counters, score bands and drift "
             "(monitor token)")
    async def monitor(who: str = Depends(monitor_client)) -> dict[str, Any]:
        return {"requests": stats.requests, "applicants": stats.applicants, "errors": dict(stats.errors),
                "latency_ms": stats.percentiles(), **stats.published}

    @app.get("/v1/noop", include_in_schema=False)
    async def noop(who: str = Depends(client)) -> dict[str, str]:
        """The same stack (auth, access log) without scoring: the benchmark's baseline."""
        return {"status": "ok"}

    app.state.stats, app.state.backend = stats, backend
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(AccessLog, stats=stats)  # outermost: a refused body is logged and counted too
    return app
