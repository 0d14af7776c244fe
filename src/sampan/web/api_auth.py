"""Who is calling the REST API: a bearer API token, or the browser session cookie plus its CSRF header.

Why both: scripts and CI use tokens (no cookies, so no CSRF risk); the console's JavaScript uses the session
the sign-in page made. A cookie-authenticated unsafe request (POST, PUT, PATCH, DELETE) must carry the
session's CSRF token in `X-CSRF-Token`: a page on another site can make the browser send the cookie, but
cannot read the token. Token and cookie are checked on every request (a disabled account or a revoked token
stops working at once), and the answer for any failure is 401 without saying which part failed.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from sampan.web.auth import Accounts, NewSession
from sampan.web.errors import Forbidden, Unauthenticated
from sampan.web.roles import Principal

__all__ = ["SESSION_COOKIE", "CSRF_HEADER", "bearer_scheme", "cookie_scheme", "principal_of_request",
           "set_session_cookie", "clear_session_cookie"]

SESSION_COOKIE = "sampan_session"  # the console's pages use the same cookie
CSRF_HEADER = "X-CSRF-Token"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})

bearer_scheme = HTTPBearer(auto_error=False, description="an API token from POST /api/v1/auth/tokens")
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False,
                             description="the browser session (unsafe methods also need the X-CSRF-Token header)")


def principal_of_request(request: Request, accounts: Accounts, bearer: HTTPAuthorizationCredentials | None,
                         cookie: str | None) -> Principal:
    """The caller, from a bearer token or a session cookie (+ CSRF header for unsafe methods); else 401/403."""
    if bearer is not None and bearer.credentials:
        if bearer.scheme.lower() != "bearer":
            raise Unauthenticated("use 'Authorization: Bearer <token>'")
        return accounts.principal_for_token(bearer.credentials)
    if cookie:
        principal, csrf = accounts.session(cookie)
        if request.method not in _SAFE and not accounts.csrf_ok(csrf, request.headers.get(CSRF_HEADER)):
            raise Forbidden("a cookie-authenticated change needs the session's CSRF token", CSRF_HEADER)
        return principal
    raise Unauthenticated("sign in (session cookie) or present an API token (Authorization: Bearer)")


def set_session_cookie(response: Response, session: NewSession, accounts: Accounts, secure: bool) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no cross-site request carries it), Secure under TLS."""
    response.set_cookie(SESSION_COOKIE, session.session_id, httponly=True, samesite="strict", secure=secure,
                        path="/", max_age=int(accounts.settings.session_absolute.total_seconds()))


def clear_session_cookie(response: Response, **_: Any) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
