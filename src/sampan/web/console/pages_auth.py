"""Sign-in (password, then the authenticator code when the account enrolled one), sign-out, and the account page
(change password, enrol a TOTP second factor).

The second step never puts the password in the page or a cookie: after a correct password the console keeps the
pending sign-in in this process's memory for five minutes under a random id (the HttpOnly cookie holds the id,
bound to the browser's pre-session), and the code step calls `Accounts.authenticate` with both, so lockout and
replay refusal stay the control plane's. The session cookie is HttpOnly, SameSite=Strict, path /, and Secure
whenever the console is served over TLS.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sampan.web.api_auth import set_session_cookie
from sampan.web.console.rendering import PREFIX, redirect, render, secure_cookies
from sampan.web.console.session import (
    SESSION_COOKIE,
    ConsoleRoute,
    PublicRoute,
    context_of,
    form_of,
    principal_of,
    safe_next,
)
from sampan.web.errors import ControlPlaneError, Unauthenticated
from sampan.web.roles import Principal

public_router = APIRouter(route_class=PublicRoute)
router = APIRouter(route_class=ConsoleRoute)

PENDING_COOKIE = "sampan_pending"
PENDING_SECONDS = 300


@dataclass
class _Pending:
    username: str
    password: str
    binding: str
    next_path: str
    expires: float


class PendingSignIns:
    """Sign-ins waiting for their authenticator code, in memory only, five minutes each, used once."""

    def __init__(self) -> None:
        self._items: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def put(self, item: _Pending) -> str:
        key = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._items = {k: v for k, v in self._items.items() if v.expires > now}
            self._items[key] = item
        return key

    def take(self, key: str | None, binding: str) -> _Pending | None:
        with self._lock:
            item = self._items.pop(key or "", None)
        if item is None or item.expires <= time.monotonic() or not secrets.compare_digest(item.binding, binding):
            return None
        return item


PENDING = PendingSignIns()


def _sign_in_page(request: Request, *, error: str | None = None, next_path: str = "/", username: str = "",
                  totp: bool = False, status: int = 200) -> Response:
    ctx = context_of(request)
    return render(request, "sign_in.html", {
        "title": "Authenticator code" if totp else "Sign in", "error": error, "next_path": next_path,
        "username": username, "totp_step": totp, "oidc_path": ctx.oidc_login_path}, status=status)


def _open_session(request: Request, principal: Principal, next_path: str, totp: bool) -> Response:
    ctx = context_of(request)
    accounts = ctx.accounts
    ctx.plane.audit(principal, "signed_in", {"method": "password", "totp": totp, "via": "console"})
    response = redirect(request, safe_next(next_path))
    set_session_cookie(response, accounts.create_session(principal), accounts, secure_cookies(request))
    response.delete_cookie(PENDING_COOKIE, path=PREFIX)
    return response


@public_router.get("/sign-in", include_in_schema=False)
def sign_in_form(request: Request, next: str = "/") -> Response:  # noqa: A002 - the query parameter's name
    if request.state.principal is not None:
        return redirect(request, safe_next(next))
    return _sign_in_page(request, next_path=safe_next(next))


@public_router.post("/sign-in", include_in_schema=False)
def sign_in(request: Request) -> Response:
    form = form_of(request)
    username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
    next_path = safe_next(str(form.get("next", "/")))
    accounts = context_of(request).accounts
    try:
        principal = accounts.authenticate(username, password)
    except Unauthenticated as exc:
        if exc.field != "totp":
            return _sign_in_page(request, error=exc.message, next_path=next_path, username=username, status=401)
        key = PENDING.put(_Pending(username, password, request.state.csrf_binding, next_path,
                                   time.monotonic() + PENDING_SECONDS))
        response = _sign_in_page(request, next_path=next_path, username=username, totp=True)
        response.set_cookie(PENDING_COOKIE, key, httponly=True, samesite="strict", path=PREFIX,
                            secure=secure_cookies(request), max_age=PENDING_SECONDS)
        return response
    return _open_session(request, principal, next_path, totp=False)


@public_router.post("/sign-in/code", include_in_schema=False)
def sign_in_code(request: Request) -> Response:
    form = form_of(request)
    pending = PENDING.take(request.cookies.get(PENDING_COOKIE), request.state.csrf_binding)
    if pending is None:
        return _sign_in_page(request, error="The sign-in expired: enter your password again.", status=401)
    code = str(form.get("code", "")).strip().replace(" ", "")
    try:
        principal = context_of(request).accounts.authenticate(pending.username, pending.password, code)
    except Unauthenticated as exc:
        return _sign_in_page(request, error=exc.message, next_path=pending.next_path, username=pending.username,
                             status=401)
    return _open_session(request, principal, pending.next_path, totp=True)


@router.post("/sign-out", include_in_schema=False)
async def sign_out(request: Request) -> Response:
    sid = request.cookies.get(SESSION_COOKIE)
    if sid:
        await run_in_threadpool(context_of(request).accounts.end_session, sid)
    response = redirect(request, "/sign-in", ("ok", "You are signed out."))
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/account", include_in_schema=False)
def account(request: Request) -> Response:
    principal = principal_of(request)
    row = context_of(request).accounts.user_by_id(principal.user_id)
    return render(request, "account.html", {"title": "Your account", "row": row, "enrolment": None})


@router.post("/account/password", include_in_schema=False)
def change_password(request: Request) -> Response:
    form = form_of(request)
    context_of(request).accounts.set_password(principal_of(request), str(form.get("old_password", "")),
                                              str(form.get("new_password", "")))
    return redirect(request, "/account", ("ok", "Your password was changed."))


@router.post("/account/totp", include_in_schema=False)
def enrol_totp(request: Request) -> Response:
    principal = principal_of(request)
    accounts = context_of(request).accounts
    secret, uri = accounts.enrol_totp(principal)
    row = accounts.user_by_id(principal.user_id)
    return render(request, "account.html", {"title": "Your account", "row": row,
                                            "enrolment": {"secret": secret, "uri": uri}})


@router.post("/account/totp/confirm", include_in_schema=False)
def confirm_totp(request: Request) -> Response:
    code = str(form_of(request).get("code", "")).strip()
    try:
        context_of(request).accounts.confirm_totp(principal_of(request), code)
    except ControlPlaneError as exc:
        return redirect(request, "/account", ("error", exc.message))
    return redirect(request, "/account", ("ok", "Your authenticator is on: sign-in now asks for its code."))
