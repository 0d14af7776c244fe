"""The reviewer's queue (grant or refuse a full-report request) and the administrator's pages (accounts, the
egress allow-list, the signed audit log).

Why the allow-list lives here: the portal refuses private, loopback and link-local endpoints unless an
administrator allow-lists them (a vendor testing inside a partner network, or the embedded mode's own local
platforms); the page shows every entry and each change is audited by the service. Pages check the role for the
navigation's sake; the service checks it again on every call.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from sampan.web.errors import Invalid
from sampan.web.portal.allow_list import save_allow_list
from sampan.web.portal.pages_base import PathId, PortalRoute, context_of, form_of, require_role, text
from sampan.web.portal.rendering import redirect, render

__all__ = ["router"]

router = APIRouter(route_class=PortalRoute)

STAFF = ("reviewer", "admin")


@router.get("/review", include_in_schema=False)
def review_queue(request: Request) -> Response:
    principal = require_role(request, *STAFF)
    portal = context_of(request).portal
    rows = portal.release_requests(principal)
    return render(request, "review.html", {"title": "Full-report requests", "section": "review", "rows": rows,
                                           "projects": portal.projects(principal)})


@router.post("/review/{request_id}", include_in_schema=False)
def decide(request: Request, request_id: PathId) -> Response:
    principal = require_role(request, *STAFF)
    form = form_of(request)
    decision = text(form, "decision", 10)
    if decision not in ("grant", "refuse"):
        raise Invalid("choose grant or refuse", "decision")
    context_of(request).portal.decide_release(principal, request_id, decision == "grant", text(form, "note", 1000))
    word = "released" if decision == "grant" else "refused"
    return redirect(request, "/review", ("ok", f"Request {request_id}: full report {word}."))


@router.get("/admin", include_in_schema=False)
def admin(request: Request) -> Response:
    principal = require_role(request, "admin")
    return _admin_page(request, principal, None)


def _admin_page(request: Request, principal: Any, new_account: dict[str, str] | None) -> Response:
    portal = context_of(request).portal
    return render(request, "admin.html", {"title": "Administration", "section": "admin",
                                          "users": portal.users(principal), "allow": list(portal.egress.allow),
                                          "new_account": new_account})


@router.post("/admin/users", include_in_schema=False)
def create_account(request: Request) -> Response:
    principal = require_role(request, "admin")
    form = form_of(request)
    email, role = text(form, "email", 254), text(form, "role", 20)
    password = context_of(request).portal.create_user(principal, email, role)
    return _admin_page(request, principal, {"email": email, "role": role, "password": password})


@router.post("/admin/users/{user_id}/disabled", include_in_schema=False)
def set_disabled(request: Request, user_id: PathId) -> Response:
    principal = require_role(request, "admin")
    disable = text(form_of(request), "disabled", 5) == "yes"
    context_of(request).portal.set_disabled(principal, user_id, disable)
    word = "disabled: its sessions are ended" if disable else "enabled"
    return redirect(request, "/admin", ("ok", f"Account {user_id} {word}."))


@router.post("/admin/allow-list", include_in_schema=False)
def set_allow_list(request: Request) -> Response:
    principal = require_role(request, "admin")
    entries = [line.strip() for line in text(form_of(request), "allow", 5000).splitlines() if line.strip()]
    allow = save_allow_list(context_of(request).portal, principal, entries)
    return redirect(request, "/admin", ("ok", f"Allow-list saved: {len(allow)} entries."))


@router.get("/admin/audit", include_in_schema=False)
def audit(request: Request) -> Response:
    principal = require_role(request, *STAFF)
    portal = context_of(request).portal
    entries = list(portal.audit_entries(principal, limit=300))
    return render(request, "audit.html", {"title": "Audit log", "section": "audit", "entries": entries,
                                          "verified": portal.audit_verified(principal)})
