"""Who is signed in, and the checks every console request passes before its page runs.

`ConsoleRoute` (an APIRoute class) wraps every page: it reads the session cookie through the control plane's
`Accounts.session` (idle and absolute expiry, disabled accounts), sends anyone without a live session to the
sign-in page, sends a one-time-password session to /account until it chose its password (R14-WEB-1), checks the
CSRF token of every POST before the page sees the form, and turns a refused
control-plane operation (`ControlPlaneError`: 400/403/404/409) into an error page instead of a traceback or the
API's JSON. Pages are plain sync functions (run in the thread pool, since the service talks to the database);
they read the already parsed form from ``request.state.form``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Path, Query
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sampan.errors import SampanError
from sampan.web.api_auth import SESSION_COOKIE
from sampan.web.console.csrf import FIELD, PRESESSION_COOKIE, CsrfGuard, new_presession
from sampan.web.console.rendering import FLASH_COOKIE, PREFIX, ROLE_LABELS, Flasher, render
from sampan.web.errors import ControlPlaneError, Unauthenticated
from sampan.web.roles import Principal, allowed
from sampan.web.schemas import MAX_ID

# Ids in console paths and queries are bounded like the API's (R14-WEB-6): 64-bit overflow is a 422, not a 500.
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]


@dataclass(frozen=True)
class ConsoleUser:
    """What the layout shows of the signed-in person, and what its navigation may offer."""

    principal: Principal

    @property
    def name(self) -> str:
        return self.principal.username

    @property
    def organisation(self) -> str | None:
        return self.principal.organisation

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.principal.role, self.principal.role)

    def can(self, action: str, party: str | None = None) -> bool:
        """For templates: show a button only when the permission table allows it (the service checks again)."""
        return allowed(self.principal, action, party if party is not None else self.principal.organisation)


@dataclass
class ConsoleContext:
    """What the console needs from the app: the service, the accounts, the CSRF and flash keys."""

    plane: Any
    accounts: Any
    csrf: CsrfGuard
    flasher: Flasher
    oidc_login_path: str | None = None


def context_of(request: Request) -> ConsoleContext:
    context: ConsoleContext = request.app.state.console
    return context


def principal_of(request: Request) -> Principal:
    """The signed-in principal (ConsoleRoute guarantees one on every non-public page)."""
    principal: Principal | None = request.state.principal
    if principal is None:
        raise Unauthenticated("sign in first")
    return principal


def form_of(request: Request) -> dict[str, Any]:
    """The POSTed form, parsed (and CSRF-checked) by ConsoleRoute: field -> value, or list for repeated fields."""
    form: dict[str, Any] = getattr(request.state, "form", {})
    return form


def safe_next(value: str | None) -> str:
    """A post-sign-in destination inside the console only: a relative console path, never another origin
    (``//evil``, ``/\\evil``, ``https://evil`` and anything with a scheme or control character become "/")."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    lowered = value.lower()
    if any(ch in value for ch in "\\\r\n\t") or ":" in value.split("?", 1)[0] or len(value) > 500 \
            or "%2f" in lowered or "%5c" in lowered or "%0d" in lowered or "%0a" in lowered:
        return "/"
    return value


async def _read_form(request: Request) -> dict[str, Any]:
    form = await request.form()
    out: dict[str, Any] = {}
    for key in form:
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        out[key] = values if len(values) > 1 else (values[0] if values else "")
    return out


FIRST_SIGN_IN_PAGES = frozenset({f"{PREFIX}/account", f"{PREFIX}/account/password", f"{PREFIX}/sign-out"})


class ConsoleRoute(APIRoute):
    """A signed-in page: session check, CSRF check on POST, control-plane errors rendered as pages."""

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
            except SampanError as exc:  # e.g. a run config the coordinator refuses at start: a page, not raw JSON
                return render(request, "error.html", {"title": "Not possible", "error": exc.user_message(),
                                                      "field": None, "status": 400}, status=400)

        return handler


class PublicRoute(ConsoleRoute):
    """A page shown before sign-in (sign-in itself): CSRF bound to a pre-session cookie."""

    public = True


async def _prepare(request: Request, public: bool) -> Response | None:
    ctx = context_of(request)
    state = request.state
    state.set_cookies = {}
    state.flashes = ctx.flasher.decode(request.cookies.get(FLASH_COOKIE))
    state.principal, state.console_user, binding = None, None, None
    sid = request.cookies.get(SESSION_COOKIE)
    if sid:
        try:
            state.principal, binding = await run_in_threadpool(ctx.accounts.session, sid)
            state.console_user = ConsoleUser(state.principal)
        except Unauthenticated:
            state.principal = None
    if state.principal is None and not public:
        target = request.url.path[len(PREFIX):] + (f"?{request.url.query}" if request.url.query else "")
        response = RedirectResponse(f"{PREFIX}/sign-in?next={quote(target, safe='/')}", status_code=303)
        if sid:
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response
    if state.principal is not None and state.principal.must_change_password and not public \
            and request.url.path not in FIRST_SIGN_IN_PAGES:  # a one-time password only chooses its own (R14-WEB-1)
        return RedirectResponse(f"{PREFIX}/account", status_code=303)
    if binding is None:
        binding = request.cookies.get(PRESESSION_COOKIE)
        if not binding:
            binding = new_presession()
            state.set_cookies[PRESESSION_COOKIE] = binding
    state.csrf_binding = binding
    state.csrf_token = ctx.csrf.token(binding)
    if request.method == "POST":
        state.form = await _read_form(request)
        if not ctx.csrf.check(binding, state.form.get(FIELD) if isinstance(state.form.get(FIELD), str) else None):
            return render(request, "error.html", {
                "title": "Form expired", "status": 403, "field": FIELD,
                "error": "This form's security token is missing or stale. Go back, reload the page and try again."},
                status=403)
    return None
