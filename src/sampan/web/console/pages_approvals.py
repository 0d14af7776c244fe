"""The approval inbox of a party operator: exactly what each job reads and spends at the operator's own party,
the dataset's budget left after it, approve (the party's agent signs or refuses) or refuse with a reason; and the
party's standing rules (list, add, remove). Other roles see each job's approval state instead.

The party is always the operator's own organisation, never a form field: an operator cannot act for another bank
through the console even by editing the page (the service checks the same scoping again).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from sampan.web.console.pages_datasets import current_consortium
from sampan.web.console.rendering import redirect, render
from sampan.web.console.session import ConsoleRoute, PathId, context_of, form_of, principal_of
from sampan.web.errors import ControlPlaneError, Forbidden
from sampan.web.roles import OPERATOR, Principal

router = APIRouter(route_class=ConsoleRoute)


def _own_party(principal: Principal) -> str:
    if principal.role != OPERATOR or not principal.organisation:
        raise Forbidden(f"{principal.role} {principal.username!r} has no approval inbox: only party operators do")
    return principal.organisation


def _list(text: str) -> list[str] | None:
    items = [x.strip() for x in text.replace("\n", ",").split(",") if x.strip()]
    return items or None


def _inbox_page(request: Request, status: int = 200, error: str | None = None,
                rule_form: dict[str, Any] | None = None) -> Response:
    principal = principal_of(request)
    plane = context_of(request).plane
    if principal.role != OPERATOR:
        consortia, chosen = current_consortium(request, None)
        jobs = [j for c in consortia for j in plane.jobs(principal, int(c["id"]))]
        return render(request, "approvals_overview.html", {"title": "Approvals", "section": "approvals",
                                                           "jobs": jobs}, status=status)
    party = _own_party(principal)
    inbox = plane.inbox(principal, party)
    return render(request, "inbox.html", {
        "title": f"Approval inbox · {party}", "section": "approvals", "party": party,
        "pending": [j for j in inbox if j["decision"] == "pending"],
        "decided": [j for j in inbox if j["decision"] != "pending"],
        "rules": plane.rules(principal, party), "error": error, "rule_form": rule_form or {}}, status=status)


@router.get("/approvals", include_in_schema=False)
def inbox(request: Request) -> Response:
    return _inbox_page(request)


@router.post("/approvals/{job_id}/approve", include_in_schema=False)
def approve(request: Request, job_id: PathId) -> Response:
    principal = principal_of(request)
    try:
        context_of(request).plane.decide(principal, job_id, _own_party(principal), True)
    except ControlPlaneError as exc:
        return _inbox_page(request, status=exc.status, error=exc.message)
    return redirect(request, "/approvals", ("ok", f"Job {job_id} approved: your agent signed the approval."))


@router.post("/approvals/{job_id}/refuse", include_in_schema=False)
def refuse(request: Request, job_id: PathId) -> Response:
    principal = principal_of(request)
    reason = str(form_of(request).get("reason", ""))
    try:
        context_of(request).plane.decide(principal, job_id, _own_party(principal), False, reason)
    except ControlPlaneError as exc:
        return _inbox_page(request, status=exc.status, error=exc.message)
    return redirect(request, "/approvals", ("ok", f"Job {job_id} refused."))


@router.post("/rules", include_in_schema=False)
def add_rule(request: Request) -> Response:
    principal = principal_of(request)
    form = form_of(request)
    rule: dict[str, Any] = {"id": str(form.get("rule_id", "")).strip()}
    for key in ("dataset",):
        if str(form.get(key, "")).strip():
            rule[key] = str(form[key]).strip()
    for key in ("workflows", "model_kinds", "columns", "partners"):
        items = _list(str(form.get(key, "")))
        if items:
            rule[key] = items
    for key in ("max_epsilon", "max_delta"):
        raw = str(form.get(key, "")).strip()
        if raw:
            rule[key] = raw
    try:
        context_of(request).plane.add_rule(principal, _own_party(principal), rule)
    except ControlPlaneError as exc:
        return _inbox_page(request, status=exc.status, error=exc.message, rule_form=form)
    return redirect(request, "/approvals", ("ok", f"Standing rule {rule['id']} added."))


@router.post("/rules/{rule_id}/remove", include_in_schema=False)
def remove_rule(request: Request, rule_id: PathId) -> Response:
    principal = principal_of(request)
    context_of(request).plane.remove_rule(principal, _own_party(principal), rule_id)
    return redirect(request, "/approvals", ("ok", "Standing rule removed."))
