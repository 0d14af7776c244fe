"""`create_app(plane, settings)`: the control plane's FastAPI app (REST API at /api/v1, OpenAPI 3.1 document at
/api/v1/openapi.json), with the hooks the console (T3) and OpenID Connect sign-in (T6) mount themselves on.

Errors: every `ControlPlaneError` (and any other deliberate `SampanError`) becomes JSON ``{"error", "field"}``
with its status; request validation failures are 422 naming the field; a database rejecting a value (e.g. a NUL
byte PostgreSQL cannot store) is a 400. Nothing a client sends should produce a 500.

Mounting: `AppSettings.mounts` are called with (app, plane) after the API router is included, so a console or
an OIDC router adds its routes, static files and middleware without this module knowing them; by default the
console (`sampan.web.console.routes.mount_console`) is mounted when it is installed, and OIDC routes
(`sampan.web.oidc.mount_oidc`) when `AppSettings.oidc` is set.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError, StarletteHTTPException
from fastapi.responses import JSONResponse

from sampan.errors import SampanError
from sampan.web.api import API_PREFIX, build_router
from sampan.web.errors import ControlPlaneError
from sampan.web.service import ControlPlane

__all__ = ["AppSettings", "create_app"]

log = logging.getLogger("sampan.web")
Mount = Callable[[FastAPI, ControlPlane], None]


@dataclass(frozen=True)
class AppSettings:
    """How the app is served. `secure_cookies`: mark session cookies Secure (True whenever served over TLS)."""

    secure_cookies: bool = True
    console: bool = True
    oidc: Any = None  # T6's OIDC settings; their router is mounted when set
    agent_verifier: Any = None  # an IdentityVerifier for mTLS agent endpoints (consortium CA + CRL)
    mounts: Sequence[Mount] = field(default_factory=tuple)
    title: str = "Sampan control plane"
    bench_token: str | None = None  # set: Sampan's Benchmark API (sampan.web.bench_api) at /bench/v1, this bearer


def _error(status: int, message: str, field_name: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field_name}, status_code=status)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ControlPlaneError)
    async def plane_error(_: Request, exc: ControlPlaneError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.field)

    @app.exception_handler(SampanError)
    async def sampan_error(_: Request, exc: SampanError) -> JSONResponse:
        return _error(400, exc.user_message())

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
        loc = [str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path")]
        return _error(422, str(first.get("msg", "invalid request")), ".".join(loc) or None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = _error(exc.status_code, str(exc.detail))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    from sqlalchemy.exc import DataError, IntegrityError

    @app.exception_handler(DataError)
    async def data_error(_: Request, exc: DataError) -> JSONResponse:
        log.info("database refused a value: %s", exc.orig)
        return _error(400, "a value cannot be stored (control characters or out of range)")

    @app.exception_handler(IntegrityError)
    async def integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        log.info("database integrity: %s", exc.orig)
        return _error(409, "this conflicts with an existing entry")


def _default_mounts(settings: AppSettings) -> list[Mount]:
    mounts: list[Mount] = []
    if settings.console and importlib.util.find_spec("sampan.web.console.routes") is not None:
        from sampan.web.console.routes import mount_console

        mounts.append(mount_console)
    if settings.oidc is not None:
        from sampan.web.oidc import mount_oidc  # type: ignore[import-not-found,unused-ignore]

        mounts.append(lambda app, plane: mount_oidc(app, plane, settings.oidc))
    if settings.bench_token:
        from sampan.web.bench_api import mount_bench_api

        mounts.append(mount_bench_api(settings.bench_token))
    return mounts


def create_app(plane: ControlPlane, settings: AppSettings | None = None, *,
               secure_cookies: bool | None = None) -> FastAPI:
    """The control plane's app over `plane` (its store and gateway). `secure_cookies` overrides the setting."""
    settings = settings or AppSettings()
    app = FastAPI(title=settings.title, version="1", openapi_url=f"{API_PREFIX}/openapi.json",
                  docs_url=f"{API_PREFIX}/docs", redoc_url=None)
    app.state.plane = plane
    app.state.settings = settings
    app.state.secure_cookies = settings.secure_cookies if secure_cookies is None else secure_cookies
    app.state.agent_verifier = settings.agent_verifier
    _install_errors(app)
    from sampan.web.api_headers import ApiSecurityHeaders

    app.add_middleware(ApiSecurityHeaders, prefix=API_PREFIX)  # no-store, nosniff, no framing on every API answer
    app.include_router(build_router())
    from sampan.web.api_agent import build_agent_router

    app.include_router(build_agent_router())
    for mount in [*_default_mounts(settings), *settings.mounts]:
        mount(app, plane)
    return app
