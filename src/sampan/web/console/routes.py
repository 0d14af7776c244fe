"""Mount the console on the control plane's FastAPI app: page routers under /console, static assets, headers.

Why server-rendered pages (Jinja2) with a little JavaScript instead of a bundled front end: every page is the
service's answer rendered on the server, through the same permission table as the API, so there is no second
client-side model of the rules to drift; the console works without JS (JS only refreshes the live run page and
asks before destructive clicks); nothing is built in CI, no npm dependency tree ships in a bank's coordinator,
and CSP can forbid inline script outright (`script-src 'self'`). See docs/architecture.md.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

from sampan.web.console import (
    pages_approvals,
    pages_audit,
    pages_auth,
    pages_consortia,
    pages_datasets,
    pages_jobs,
    pages_models,
    pages_runs,
    pages_users,
)
from sampan.web.console.csrf import CsrfGuard
from sampan.web.console.headers import SecurityHeaders
from sampan.web.console.rendering import PREFIX, STATIC, Flasher
from sampan.web.console.session import ConsoleContext

__all__ = ["mount_console", "page_routes", "PREFIX"]

_ROUTERS = (pages_auth.public_router, pages_auth.router, pages_consortia.router, pages_datasets.router,
            pages_jobs.router, pages_approvals.router, pages_runs.router, pages_models.router, pages_audit.router,
            pages_users.router)


def mount_console(app: FastAPI, plane: Any, *, oidc_login_path: str | None = None, key: bytes | None = None) -> None:
    """Serve the console for ``plane`` (a `ControlPlane`) at /console on ``app``; call before the app starts.

    ``key`` signs CSRF tokens and flash notes (default: random per process, so a restart asks users to reload
    a form they had open). ``oidc_login_path``: where the sign-in page's OpenID Connect button points (T6's
    route), or None for no button."""
    secret = key or secrets.token_bytes(32)
    app.state.console = ConsoleContext(plane=plane, accounts=plane.accounts, csrf=CsrfGuard(secret),
                                       flasher=Flasher(secret), oidc_login_path=oidc_login_path)
    app.state.console_flasher = app.state.console.flasher
    for router in _ROUTERS:
        app.include_router(router, prefix=PREFIX)
    if not any(getattr(route, "path", None) == "/" for route in app.routes):
        app.add_api_route("/", lambda: RedirectResponse(f"{PREFIX}/", status_code=307), include_in_schema=False)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(STATIC)), name="console-static")
    app.add_middleware(SecurityHeaders, prefixes=(PREFIX,), static_prefix=f"{PREFIX}/static/")


def page_routes() -> list[tuple[str, str]]:
    """Every console page as (method, path), for tests that walk them all (role and CSRF checks)."""
    return sorted((method, f"{PREFIX}{route.path}") for router in _ROUTERS for route in router.routes
                  if isinstance(route, APIRoute) for method in route.methods or ())
