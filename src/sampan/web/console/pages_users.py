"""Accounts (admins; auditors read): the list with role, organisation, second factor and state; create an
analyst, auditor, admin or party-operator account (its one-time password shown once, on the answer page only);
disable or enable an account (disabling ends its sessions and revokes its tokens)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from sampan.web.console.rendering import ROLE_LABELS, redirect, render
from sampan.web.console.session import ConsoleRoute, PathId, context_of, form_of, principal_of
from sampan.web.errors import ControlPlaneError

router = APIRouter(route_class=ConsoleRoute)


def _page(request: Request, status: int = 200, **extra: Any) -> Response:
    rows = context_of(request).plane.users(principal_of(request))
    return render(request, "users.html", {"title": "Accounts", "section": "users", "users": rows,
                                          "roles": list(ROLE_LABELS.items()), "created": None, "error": None,
                                          "form": {}, **extra}, status=status)


@router.get("/users", include_in_schema=False)
def users(request: Request) -> Response:
    return _page(request)


@router.post("/users", include_in_schema=False)
def create_user(request: Request) -> Response:
    form = form_of(request)
    try:
        created = context_of(request).plane.create_user(
            principal_of(request), str(form.get("username", "")), str(form.get("role", "")),
            str(form.get("organisation", "")).strip() or None)
    except ControlPlaneError as exc:
        return _page(request, status=exc.status, error=exc.message, form=form)
    return _page(request, created=created)


@router.post("/users/{user_id}/disable", include_in_schema=False)
def disable(request: Request, user_id: PathId) -> Response:
    context_of(request).plane.set_user_disabled(principal_of(request), user_id, True)
    return redirect(request, "/users", ("ok", "The account is disabled: its sessions ended, its tokens revoked."))


@router.post("/users/{user_id}/enable", include_in_schema=False)
def enable(request: Request, user_id: PathId) -> Response:
    context_of(request).plane.set_user_disabled(principal_of(request), user_id, False)
    return redirect(request, "/users", ("ok", "The account is enabled."))
