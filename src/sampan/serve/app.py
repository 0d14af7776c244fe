"""The FastAPI app of `sampan serve`: POST /v1/score, GET /v1/health, /v1/model, /v1/monitoring (+ /v1/noop).

Why one factory taking a backend: the same routes serve a horizontal model (scored here) and a vertical one
(the long-lived session with the partners); tests and the benchmark build the app without uvicorn.
Access is checked per request (API token) on top of whatever TLS enforced (mTLS client certificates).
The access log is one JSON line per request: time, method, path, status, milliseconds, client name and
the number of applicants, never an id, a feature or a score.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sampan.errors import DataError
from sampan.serve.auth import TokenBook
from sampan.serve.backends import ScoringBackend
from sampan.serve.schemas import Health, ModelDescription, Monitoring, ScoreRequest, ScoreResponse

__all__ = ["create_app", "ServiceStats"]

access_log = logging.getLogger("sampan.serve.access")


@dataclass
class ServiceStats:
    """Bank-local counters for /v1/monitoring (nothing here leaves the bank)."""

    requests: int = 0
    applicants: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    bands: Counter[str] = field(default_factory=Counter)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=2000))

    def scored(self, results: list[dict[str, Any]]) -> None:
        self.applicants += len(results)
        for r in results:
            self.decisions[r["decision"] or "none"] += 1
            low = int(r["score"] // 20 * 20)
            self.bands[f"{low}-{low + 20}"] += 1

    def percentiles(self) -> dict[str, float]:
        ordered = sorted(self.latencies)
        if not ordered:
            return {}
        return {f"p{round(q * 100)}": round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)
                for q in (0.5, 0.99)}


def create_app(backend: ScoringBackend, *, tokens: TokenBook | None = None, mtls: bool = False,
               monitoring: Callable[[], dict[str, Any] | None] | None = None) -> FastAPI:
    """The service for ``backend``. ``tokens``: API tokens required (Bearer); ``mtls``: TLS already demanded a
    client certificate (recorded in the access log); neither: refused unless the caller meant it (the CLI
    allows that only on loopback)."""
    app = FastAPI(title="Sampan scoring service", version="1",
                  description="Scores loan applicants with a federated model held at this bank. Vertical models "
                              "reach the partners through the coordinator relay; scores never leave the bank.")
    stats = ServiceStats()
    started = time.monotonic()
    bearer = HTTPBearer(auto_error=False)

    def client(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
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

    @app.middleware("http")
    async def log_access(request: Request, call_next: Callable[[Request], Any]) -> Any:
        begin = time.perf_counter()
        response = await call_next(request)
        ms = (time.perf_counter() - begin) * 1000
        if request.url.path == "/v1/score":
            stats.requests += 1
            stats.latencies.append(ms)
            if response.status_code >= 400:
                stats.errors[str(response.status_code)] += 1
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(json.dumps({"t": round(time.time(), 3), "method": request.method,
                                        "path": request.url.path, "status": response.status_code, "ms": round(ms, 2),
                                        "client": getattr(request.state, "client", None),
                                        "applicants": getattr(request.state, "applicants", None)}))
        return response

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.post("/v1/score", response_model=ScoreResponse, summary="Score one applicant or a batch")
    async def score(body: ScoreRequest, request: Request, who: str = Depends(client)) -> dict[str, Any]:
        rows = [a.model_dump() for a in body.applicants]
        request.state.applicants = len(rows)
        try:
            results = await asyncio.to_thread(backend.score, rows) if backend.info.topology == "vertical" \
                else backend.score(rows)
        except (DataError, ValueError) as exc:
            raise DataError(str(exc)) from None
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            raise HTTPException(503, f"the scoring session with the partners is not answering ({exc})") from None
        stats.scored(results)
        return {"model": backend.info.name, "version": backend.info.version, "results": results}

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

    @app.get("/v1/monitoring", response_model=Monitoring, summary="Service counters, score bands and drift")
    async def monitor(who: str = Depends(client)) -> dict[str, Any]:
        return {"requests": stats.requests, "applicants": stats.applicants, "errors": dict(stats.errors),
                "latency_ms": stats.percentiles(), "decisions": dict(stats.decisions),
                "score_bands": dict(sorted(stats.bands.items())), "drift": monitoring() if monitoring else None}

    @app.get("/v1/noop", include_in_schema=False)
    async def noop(who: str = Depends(client)) -> dict[str, str]:
        """The same stack (auth, access log) without scoring: the benchmark's baseline."""
        return {"status": "ok"}

    app.state.stats = stats
    return app
