"""Registration (an account and its company's basic information), email verification, sign-in and sign-out.

Why the verification link is logged and not mailed: the embedded portal (`sampan portal`) has no mail server; the
link goes to the portal's log (warning level), which only the operator of the machine reads. A deployment with
mail sends the same link (`PortalSettings.send_link`). The token is single-use, stored only as a SHA-256 hash.
The link opens a form asking for the password chosen at registration: verification needs both the mailbox and the
registrant's password (R17-PORTAL-5). Registering a taken address answers exactly like a new registration (the
owner gets a notice instead of a link, R17-PORTAL-4). Sign-in refusals are alike for an unknown email, a wrong
password or a disabled account, so the form tells an outsider nothing about which accounts exist
(`PortalAccounts.authenticate`); guessing is throttled per (email, client address), never by locking the owner
out. The session cookie is HttpOnly, SameSite=Strict, path /portal, and Secure under TLS.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sampan.web.errors import ControlPlaneError
from sampan.web.portal.pages_base import (
    SESSION_COOKIE,
    PortalRoute,
    PublicRoute,
    context_of,
    form_of,
    principal_of,
    safe_next,
    text,
)
from sampan.web.portal.rendering import PREFIX, redirect, render, set_cookie

__all__ = ["public_router", "router", "COMPANY_FIELDS"]

public_router = APIRouter(route_class=PublicRoute)
router = APIRouter(route_class=PortalRoute)

# (form field, label, required, autocomplete): the company's basic information the issue asks for.
COMPANY_FIELDS = (
    ("company_name", "Company name", True, "organization"),
    ("registration_number", "Company registration number", True, "off"),
    ("country", "Country or region", True, "country-name"),
    ("address", "Registered address", False, "street-address"),
    ("contact_name", "Contact person", True, "name"),
    ("website", "Company website", False, "url"),
)


@public_router.get("/", include_in_schema=False)
def home(request: Request) -> Response:
    if request.state.principal is not None:
        return redirect(request, "/projects")
    return render(request, "home.html", {"title": "Verify your FL platform"})


def _register_page(request: Request, values: dict[str, Any] | None = None, error: str | None = None,
                   field: str | None = None, status: int = 200) -> Response:
    return render(request, "register.html", {"title": "Register", "values": values or {}, "error": error,
                                             "error_field": field, "company_fields": COMPANY_FIELDS}, status=status)


@public_router.get("/register", include_in_schema=False)
def register_form(request: Request) -> Response:
    return _register_page(request)


@public_router.post("/register", include_in_schema=False)
def register(request: Request) -> Response:
    from sampan.web.portal.accounts import CompanyInfo

    form = form_of(request)
    values = {name: text(form, name, 400) for name, *_ in COMPANY_FIELDS}
    values["email"] = text(form, "email", 254)
    password, again = str(form.get("password", "")), str(form.get("password_again", ""))
    if password != again:
        return _register_page(request, values, "The two passwords differ: type the same password twice.",
                              "password_again", 400)
    ctx = context_of(request)
    company = CompanyInfo(name=values["company_name"], registration_number=values["registration_number"],
                          country=values["country"], address=values["address"], contact_name=values["contact_name"],
                          contact_email=values["email"], website=values["website"])
    try:
        token = ctx.accounts.register(values["email"], password, company)
    except ControlPlaneError as exc:
        return _register_page(request, values, exc.message, exc.field, exc.status)
    if token and ctx.settings.send_link is not None:  # a deployment with mail; embedded accounts log the link
        ctx.settings.send_link(values["email"], f"{PREFIX}/verify?token={token}")
    # "" (a taken address): the owner got a notice from the accounts; the answer is the same page either way
    return render(request, "registered.html", {"title": "Check your email", "email": values["email"],
                                               "logged": ctx.settings.embedded})


def _verify_page(request: Request, token: str, error: str | None = None, status: int = 200) -> Response:
    return render(request, "verify.html", {"title": "Confirm your email address", "token": token[:200],
                                           "error": error}, status=status)


@public_router.get("/verify", include_in_schema=False)
def verify_form(request: Request, token: str = "") -> Response:
    """The link only shows a form: verifying needs the registration's password too (a GET changes nothing)."""
    return _verify_page(request, token)


@public_router.post("/verify", include_in_schema=False)
def verify_email(request: Request) -> Response:
    form = form_of(request)
    token, password = text(form, "token", 200), str(form.get("password", ""))[:1100]
    ctx = context_of(request)
    try:
        ctx.accounts.verify_email(token, password)
    except ControlPlaneError as exc:
        if exc.field == "password":
            return _verify_page(request, token, exc.message, exc.status)
        return render(request, "error.html", {"title": "Link not valid", "error": exc.message, "field": "token",
                                              "status": 400}, status=400)
    return redirect(request, "/sign-in", ("ok", "Your email address is verified. Sign in to create your project."))


def _sign_in_page(request: Request, *, error: str | None = None, next_path: str = "/projects", email: str = "",
                  status: int = 200) -> Response:
    return render(request, "sign_in.html", {"title": "Sign in", "error": error, "next_path": next_path,
                                            "email": email}, status=status)


@public_router.get("/sign-in", include_in_schema=False)
def sign_in_form(request: Request, next: str = "/projects") -> Response:  # noqa: A002 - the query parameter
    if request.state.principal is not None:
        return redirect(request, safe_next(next))
    return _sign_in_page(request, next_path=safe_next(next))


@public_router.post("/sign-in", include_in_schema=False)
def sign_in(request: Request) -> Response:
    form = form_of(request)
    email, password = text(form, "email", 254), str(form.get("password", ""))
    next_path = safe_next(text(form, "next", 500))
    ctx = context_of(request)
    try:
        principal = ctx.accounts.authenticate(email, password, client=request.client.host if request.client else "")
    except ControlPlaneError as exc:
        return _sign_in_page(request, error=exc.message, next_path=next_path, email=email,
                             status=429 if exc.status == 429 else 401)
    session_id, _csrf_secret = ctx.accounts.new_session(principal)
    target = "/account" if getattr(principal, "must_change_password", False) else next_path
    response = redirect(request, target)
    set_cookie(request, response, SESSION_COOKIE, session_id)
    return response


@router.post("/sign-out", include_in_schema=False)
async def sign_out(request: Request) -> Response:
    sid = request.cookies.get(SESSION_COOKIE)
    if sid:
        await run_in_threadpool(context_of(request).accounts.end_session, sid)
    response = redirect(request, "/sign-in", ("ok", "You are signed out."))
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


@router.get("/account", include_in_schema=False)
def account(request: Request) -> Response:
    return render(request, "account.html", {"title": "Your account", "principal": principal_of(request)})


@router.post("/account/password", include_in_schema=False)
def change_password(request: Request) -> Response:
    form = form_of(request)
    ctx, principal = context_of(request), principal_of(request)
    new, again = str(form.get("new_password", "")), str(form.get("new_password_again", ""))
    if new != again:
        return redirect(request, "/account", ("error", "The two new passwords differ: type the same one twice."))
    try:
        ctx.accounts.set_password(principal, str(form.get("old_password", "")), new)
    except ControlPlaneError as exc:
        return redirect(request, "/account", ("error", exc.message))
    response = redirect(request, "/sign-in", ("ok", "Your password was changed and every session of your account "
                                                    "was ended: sign in with the new one."))
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response
