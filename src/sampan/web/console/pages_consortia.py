"""Consortium pages: the list, one consortium with its members, and the admin's create and invite forms.

An invitation answers with the new operator's one-time password on the response page itself (never in a redirect
URL or a flash cookie), once: the page is no-store, and the control plane keeps only the password's hash.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from sampan.web.console.rendering import redirect, render
from sampan.web.console.session import ConsoleRoute, PathId, context_of, form_of, principal_of
from sampan.web.errors import ControlPlaneError

router = APIRouter(route_class=ConsoleRoute)

MEMBER_ROLES = (("bank", "Bank"), ("label_holder", "Label holder"), ("feature_holder", "Feature holder"),
                ("payment_provider", "Payment provider"), ("platform", "Platform"), ("observer", "Observer"))


@router.get("/", include_in_schema=False)
def home(request: Request) -> Response:
    principal = principal_of(request)
    return redirect(request, "/approvals" if principal.role == "party_operator" else "/consortia")


@router.get("/consortia", include_in_schema=False)
def consortia(request: Request) -> Response:
    rows = context_of(request).plane.consortia(principal_of(request))
    return render(request, "consortia.html", {"title": "Consortia", "section": "consortia", "consortia": rows})


@router.post("/consortia", include_in_schema=False)
def create_consortium(request: Request) -> Response:
    form = form_of(request)
    try:
        row = context_of(request).plane.create_consortium(principal_of(request), str(form.get("name", "")),
                                                          str(form.get("description", "")))
    except ControlPlaneError as exc:
        rows = context_of(request).plane.consortia(principal_of(request))
        return render(request, "consortia.html", {"title": "Consortia", "section": "consortia", "consortia": rows,
                                                  "error": exc.message, "form": form}, status=exc.status)
    return redirect(request, f"/consortia/{row['id']}", ("ok", f"Consortium {row['name']} created."))


def _consortium_page(request: Request, consortium_id: int, status: int = 200, **extra: object) -> Response:
    plane = context_of(request).plane
    principal = principal_of(request)
    row = plane.consortium(principal, consortium_id)
    connected = {p["name"]: p["connected"] for p in plane.parties(principal)}
    return render(request, "consortium.html", {"title": row["name"], "section": "consortia", "consortium": row,
                                               "connected": connected,
                                               "member_roles": MEMBER_ROLES, "invited": None, "error": None,
                                               "form": {}, **extra}, status=status)


@router.get("/consortia/{consortium_id}", include_in_schema=False)
def consortium(request: Request, consortium_id: PathId) -> Response:
    return _consortium_page(request, consortium_id)


@router.post("/consortia/{consortium_id}/members", include_in_schema=False)
def invite(request: Request, consortium_id: PathId) -> Response:
    form = form_of(request)
    plane = context_of(request).plane
    try:
        invited = plane.invite_member(
            principal_of(request), consortium_id, str(form.get("organisation", "")), str(form.get("role", "bank")),
            certificate_pem=str(form.get("certificate_pem", "")).strip() or None,
            operator_username=str(form.get("operator_username", "")).strip() or None)
    except ControlPlaneError as exc:
        return _consortium_page(request, consortium_id, status=exc.status, error=exc.message, form=form)
    return _consortium_page(request, consortium_id, invited=invited)
