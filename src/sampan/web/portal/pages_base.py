"""The checks every portal request passes before its page runs, and what pages read from the request.

`PortalRoute` (an APIRoute class) wraps every page: it reads the portal's session cookie through
`PortalAccounts.session_with_csrf` (idle and absolute expiry, disabled accounts), sends anyone without a live
session to the sign-in page, sends a one-time-password session to /account until it chose its own password,
checks the CSRF token of every POST before the page sees the form, and turns a refused operation
(`ControlPlaneError`: 400/401/403/404/409, or any `SampanError`) into an error page instead of a traceback.

CSRF: a signed-in person's token is an HMAC (key held only by this process) of their session's own CSRF secret,
so it changes with every session and says nothing about the session id; before sign-in (register, sign-in:
login CSRF) it is bound to a random pre-session cookie. Cookies are SameSite=Strict and HttpOnly, path /portal:
a second, independent layer. Pages are plain sync functions (run in the thread pool: the service talks to the
database).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Path
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sampan.errors import SampanError
from sampan.web.console.csrf import FIELD, PRESESSION_COOKIE, CsrfGuard, new_presession
from sampan.web.console.rendering import Flasher
from sampan.web.errors import ControlPlaneError, Forbidden, Unauthenticated
from sampan.web.portal.rendering import FLASH_COOKIE, PREFIX, render
from sampan.web.schemas import MAX_ID

__all__ = ["SESSION_COOKIE", "PathId", "PortalContext", "PortalRoute", "PublicRoute", "context_of", "form_of",
           "principal_of", "require_role", "safe_next"]

SESSION_COOKIE = "sampan_portal_session"
PRESESSION = f"portal_{PRESESSION_COOKIE}"
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
FIRST_SIGN_IN_PAGES = frozenset({f"{PREFIX}/account", f"{PREFIX}/account/password", f"{PREFIX}/sign-out"})


@dataclass
class PortalContext:
    """What the pages need from the app: the service, the accounts, the CSRF and flash keys, the settings."""

    portal: Any
    accounts: Any
    csrf: CsrfGuard
    flasher: Flasher
    settings: Any
    extra: dict[str, Any] = field(default_factory=dict)


def context_of(request: Request) -> PortalContext:
    context: PortalContext = request.app.state.portal
    return context


def principal_of(request: Request) -> Any:
    """The signed-in `PortalPrincipal` (PortalRoute guarantees one on every non-public page)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise Unauthenticated("sign in first")
    return principal


def require_role(request: Request, *roles: str) -> Any:
    """The principal, when its role is one of ``roles``; else Forbidden (the service checks again)."""
    principal = principal_of(request)
    if principal.role not in roles:
        raise Forbidden(f"this page is for {' or '.join(roles)} accounts", "role")
    return principal


def form_of(request: Request) -> dict[str, Any]:
    """The POSTed form, parsed (and CSRF-checked) by PortalRoute: field -> value, or a list for repeated fields."""
    form: dict[str, Any] = getattr(request.state, "form", {})
    return form


def text(form: dict[str, Any], name: str, limit: int = 2000) -> str:
    """One text field, stripped, at most ``limit`` characters (a repeated field keeps its first value)."""
    value = form.get(name, "")
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value).strip()[:limit]


def safe_next(value: str | None) -> str:
    """A post-sign-in destination inside the portal only: a relative path, never another origin."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or len(value) > 500:
        return "/projects"
    lowered = value.lower()
    if any(ch in value for ch in "\\\r\n\t") or ":" in value.split("?", 1)[0] \
            or any(bad in lowered for bad in ("%2f", "%5c", "%0d", "%0a")):
        return "/projects"
    return value


async def _read_form(request: Request) -> dict[str, Any]:
    form = await request.form()
    out: dict[str, Any] = {}
    for key in form:
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        out[key] = values if len(values) > 1 else (values[0] if values else "")
    return out


class PortalRoute(APIRoute):
    """A signed-in page: session check, CSRF check on POST, refused operations rendered as pages."""

    public = False

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()
        public = self.public

        async def handler(request: Request) -> Response:
            refused = await _prepare(request, public)
            if refused is not None:
                return refused
            try:
                return await original(request)
            except ControlPlaneError as exc:
                return render(request, "error.html", {"title": "Not possible", "error": exc.message,
                                                      "field": exc.field, "status": exc.status}, status=exc.status)
            except SampanError as exc:
                return render(request, "error.html", {"title": "Not possible", "error": exc.user_message(),
                                                      "field": None, "status": 400}, status=400)

        return handler


class PublicRoute(PortalRoute):
    """A page shown before sign-in (register, verify, sign-in): CSRF bound to a pre-session cookie."""

    public = True


async def _prepare(request: Request, public: bool) -> Response | None:
    ctx = context_of(request)
    state = request.state
    state.set_cookies = {}
    state.flashes = ctx.flasher.decode(request.cookies.get(FLASH_COOKIE))
    state.principal, binding = None, None
    sid = request.cookies.get(SESSION_COOKIE)
    if sid:
        found = await run_in_threadpool(_session, ctx, sid)
        if found is not None:
            state.principal, binding = found
    if state.principal is None and not public:
        target = request.url.path[len(PREFIX):] + (f"?{request.url.query}" if request.url.query else "")
        response = RedirectResponse(f"{PREFIX}/sign-in?next={quote(target, safe='/')}", status_code=303)
        if sid:
            response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response
    if state.principal is not None and state.principal.must_change_password and not public \
            and request.url.path not in FIRST_SIGN_IN_PAGES:  # a one-time password only chooses its own
        return RedirectResponse(f"{PREFIX}/account", status_code=303)
    if binding is None:
        binding = request.cookies.get(PRESESSION)
        if not binding:
            binding = new_presession()
            state.set_cookies[PRESESSION] = binding
    state.csrf_token = ctx.csrf.token(binding)
    if request.method == "POST":
        state.form = await _read_form(request)
        submitted = state.form.get(FIELD)
        if not ctx.csrf.check(binding, submitted if isinstance(submitted, str) else None):
            return render(request, "error.html", {
                "title": "Form expired", "status": 403, "field": FIELD,
                "error": "This form's security token is missing or stale. Go back, reload the page and try again."},
                status=403)
    return None


def _session(ctx: PortalContext, sid: str) -> tuple[Any, str] | None:
    try:
        found: tuple[Any, str] | None = ctx.accounts.session_with_csrf(sid)
    except ControlPlaneError:
        return None
    return found
