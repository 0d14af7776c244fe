"""Sign-in (user name, password and, for an account with an authenticator, its code in the same form), sign-out,
and the account page (change password, enrol or replace a TOTP second factor).

Why one step: asking for the code only after a right password would tell an outsider the password was right
(review R14-WEB-14); `Accounts.authenticate` answers every refusal alike and counts a right password without its
code as a failure. Every sign-in failure, sign-out, password change and TOTP change is in the audit log, as in the
API (R14-WEB-11). A one-time-password session is sent to /account until it chose its own password (R14-WEB-1).
The session cookie is HttpOnly, SameSite=Strict, path /, and Secure whenever the console is served over TLS.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sampan.web.api_auth import set_session_cookie
from sampan.web.console.rendering import redirect, render, secure_cookies
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


def _sign_in_page(request: Request, *, error: str | None = None, next_path: str = "/", username: str = "",
                  status: int = 200) -> Response:
    ctx = context_of(request)
    return render(request, "sign_in.html", {
        "title": "Sign in", "error": error, "next_path": next_path, "username": username,
        "oidc_path": ctx.oidc_login_path}, status=status)


def _open_session(request: Request, principal: Principal, next_path: str, totp: bool) -> Response:
    ctx = context_of(request)
    accounts = ctx.accounts
    ctx.plane.audit(principal, "signed_in", {"method": "password", "totp": totp, "via": "console"})
    target = "/account" if principal.must_change_password else safe_next(next_path)
    response = redirect(request, target)
    set_session_cookie(response, accounts.create_session(principal), accounts, secure_cookies(request))
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
    code = str(form.get("code", "")).strip().replace(" ", "") or None
    next_path = safe_next(str(form.get("next", "/")))
    ctx = context_of(request)
    try:
        principal = ctx.accounts.authenticate(username, password, code)
    except Unauthenticated as exc:  # audited like the API's (a SIEM watches for bursts)
        ctx.plane.audit(None, "sign_in_failed", {"username": username[:200], "reason": exc.field, "via": "console"})
        return _sign_in_page(request, error=exc.message, next_path=next_path, username=username, status=401)
    return _open_session(request, principal, next_path, totp=code is not None)


@router.post("/sign-out", include_in_schema=False)
async def sign_out(request: Request) -> Response:
    sid = request.cookies.get(SESSION_COOKIE)
    ctx = context_of(request)
    if sid:
        await run_in_threadpool(ctx.accounts.end_session, sid)
        await run_in_threadpool(ctx.plane.audit, principal_of(request), "signed_out", {"via": "console"})
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
    ctx, principal = context_of(request), principal_of(request)
    try:
        ended = ctx.accounts.set_password(principal, str(form.get("old_password", "")),
                                          str(form.get("new_password", "")),
                                          keep_session=request.cookies.get(SESSION_COOKIE))
    except Unauthenticated as exc:  # a wrong current password: audited, shown on the page (not a sign-out)
        ctx.plane.audit(principal, "password_change_failed", {"reason": exc.field, "via": "console"})
        return redirect(request, "/account", ("error", exc.message))
    ctx.plane.audit(principal, "password_changed", {"sessions_ended": ended, "via": "console"})
    others = f" {ended} other session(s) of your account were signed out." if ended else ""
    return redirect(request, "/account", ("ok", "Your password was changed." + others))


@router.post("/account/totp", include_in_schema=False)
def enrol_totp(request: Request) -> Response:
    principal = principal_of(request)
    ctx = context_of(request)
    accounts = ctx.accounts
    proof = str(form_of(request).get("proof", "")) or None
    try:
        secret, uri = accounts.enrol_totp(principal, proof=proof)
    except Unauthenticated as exc:
        ctx.plane.audit(principal, "totp_enrolment_refused", {"reason": exc.field, "via": "console"})
        return redirect(request, "/account", ("error", exc.message))
    ctx.plane.audit(principal, "totp_enrolment_started", {"via": "console"})
    row = accounts.user_by_id(principal.user_id)
    return render(request, "account.html", {"title": "Your account", "row": row,
                                            "enrolment": {"secret": secret, "uri": uri}})


@router.post("/account/totp/confirm", include_in_schema=False)
def confirm_totp(request: Request) -> Response:
    code = str(form_of(request).get("code", "")).strip()
    ctx, principal = context_of(request), principal_of(request)
    try:
        ctx.accounts.confirm_totp(principal, code)
    except ControlPlaneError as exc:
        return redirect(request, "/account", ("error", exc.message))
    ctx.plane.audit(principal, "totp_enabled", {"via": "console"})
    return redirect(request, "/account", ("ok", "Your authenticator is on: sign-in now asks for its code."))
