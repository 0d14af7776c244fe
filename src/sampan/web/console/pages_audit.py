"""The audit log page: the control plane's signed, hash-chained entries with the chain's verification result, a
filter by actor and by run (the run's own chain is verified too)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from sampan.web.console.rendering import render
from sampan.web.console.session import ConsoleRoute, context_of, principal_of

router = APIRouter(route_class=ConsoleRoute)


def _mentions(entry: dict[str, Any], run: str) -> bool:
    detail = entry.get("detail") or {}
    return isinstance(detail, dict) and detail.get("run_id") == run


@router.get("/audit", include_in_schema=False)
def audit(request: Request, actor: str = "", run: str = "", limit: int = 200) -> Response:
    plane = context_of(request).plane
    principal = principal_of(request)
    actor, run = actor.strip()[:200], run.strip()[:100]
    log = plane.audit_log(principal, limit=5000 if run else max(1, min(limit, 5000)), actor=actor or None)
    entries = log["entries"]
    run_check = None
    if run:
        entries = [e for e in entries if _mentions(e, run)][-max(1, min(limit, 5000)):]
        run_check = plane.verify_audit(principal, run)
    return render(request, "audit.html", {"title": "Audit log", "section": "audit", "entries": list(reversed(entries)),
                                          "total": log["total"], "verification": log["verification"],
                                          "actor": actor, "run": run, "run_check": run_check})
