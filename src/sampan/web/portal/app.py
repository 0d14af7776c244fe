"""The verification portal as a FastAPI app of its own, served at /portal: pages, static assets, security headers.

Same stack as the console (server-rendered Jinja2 with autoescape, CSRF tokens on every form, the console's
`SecurityHeaders` with `script-src 'self'` and no inline script, SameSite=Strict HttpOnly cookies), so a security
review of one covers the other. The app holds no state of its own: the `Portal` service and `PortalAccounts` own
the database; `PortalSettings` says how verification links reach the applicant (logged in the embedded mode).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

from sampan.web.console.csrf import CsrfGuard
from sampan.web.console.headers import SecurityHeaders
from sampan.web.console.rendering import Flasher
from sampan.web.portal import pages_admin, pages_auth, pages_evaluations, pages_projects
from sampan.web.portal.body_limit import DEFAULT_MAX_BODY, BodyLimit
from sampan.web.portal.pages_base import PortalContext
from sampan.web.portal.rendering import PREFIX, STATIC

__all__ = ["PortalSettings", "create_portal_app", "mount_portal", "page_routes", "PREFIX"]

_ROUTERS = (pages_auth.public_router, pages_auth.router, pages_projects.router, pages_evaluations.router,
            pages_admin.router)


@dataclass
class PortalSettings:
    """How the app is run: ``accounts`` (a `PortalAccounts`; None: the portal's own), ``key`` (signs CSRF tokens and
    flash notes; random per process by default), ``embedded`` (links are logged, the pages say so),
    ``send_link(email, path)`` (how a verification link reaches the applicant where there is mail; None:
    `PortalAccounts(log_links=True)` logs it), ``secure_cookies`` (set behind a TLS-terminating proxy),
    ``allowed_hosts`` (Host headers the app answers; the embedded mode's loopback names, so a DNS-rebinding page
    on another name cannot drive the portal from a browser on this machine; None: any), ``max_body`` (bytes a
    request to /portal may carry; larger ones get 413 before any form is parsed: `sampan.web.portal.body_limit`)."""

    accounts: Any = None
    key: bytes | None = None
    embedded: bool = True
    send_link: Callable[[str, str], None] | None = None
    secure_cookies: bool = False
    allowed_hosts: tuple[str, ...] | None = None
    max_body: int = DEFAULT_MAX_BODY


def mount_portal(app: FastAPI, portal: Any, settings: PortalSettings) -> None:
    """Serve the portal for ``portal`` (a `Portal`) at /portal on ``app``; call before the app starts."""
    secret = settings.key or secrets.token_bytes(32)
    app.state.portal = PortalContext(portal=portal, accounts=settings.accounts or portal.accounts,
                                     csrf=CsrfGuard(secret), flasher=Flasher(secret), settings=settings)
    app.state.secure_cookies = settings.secure_cookies
    for router in _ROUTERS:
        app.include_router(router, prefix=PREFIX)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(STATIC)), name="portal-static")
    app.add_middleware(SecurityHeaders, prefixes=(PREFIX,), static_prefix=f"{PREFIX}/static/")
    app.add_middleware(BodyLimit, max_bytes=settings.max_body, prefixes=(PREFIX,))


def create_portal_app(portal: Any, settings: PortalSettings) -> FastAPI:
    """A FastAPI app with only the portal (and / redirecting to it): what `sampan portal` serves."""
    app = FastAPI(title="Sampan verification portal", docs_url=None, redoc_url=None, openapi_url=None)
    mount_portal(app, portal, settings)
    app.add_api_route("/", lambda: RedirectResponse(f"{PREFIX}/", status_code=307), include_in_schema=False)
    if settings.allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    return app


def page_routes() -> list[tuple[str, str]]:
    """Every portal page as (method, path), for tests that walk them all (role and CSRF checks)."""
    return sorted((method, f"{PREFIX}{route.path}") for router in _ROUTERS for route in router.routes
                  if isinstance(route, APIRoute) for method in route.methods or ())
