"""Dataset pages: what each party registered (schema and row count, never rows), each dataset's lifetime budget
(total, spent, reserved, remaining) and its spending over time as a server-drawn SVG; an operator registers one of
its own agent's datasets from the agent's catalogue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from sampan.web.console.charts import spend_chart
from sampan.web.console.rendering import redirect, render
from sampan.web.console.session import ConsoleRoute, PathId, QueryId, context_of, form_of, principal_of
from sampan.web.errors import ControlPlaneError, Invalid
from sampan.web.roles import Principal, allowed

router = APIRouter(route_class=ConsoleRoute)


def current_consortium(request: Request, consortium_id: int | None) -> tuple[list[dict[str, Any]], int | None]:
    """The consortia the user sees and the chosen one (the query's, else the first)."""
    rows = context_of(request).plane.consortia(principal_of(request))
    ids = [int(r["id"]) for r in rows]
    if consortium_id is not None and consortium_id in ids:
        return rows, consortium_id
    return rows, (ids[0] if ids else None)


def _when(value: Any) -> datetime | None:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def budget_chart(dataset: dict[str, Any]) -> Any:
    """The dataset's spend-over-time chart from its budget mirror's history (None without a total)."""
    budget = dataset.get("budget") or {}
    if budget.get("total_epsilon") is None:
        return None
    points = []
    for entry in budget.get("history") or []:
        at = _when(entry.get("at"))
        if at is not None and entry.get("spent_epsilon") is not None:
            points.append((at, float(entry["spent_epsilon"])))
    points.sort(key=lambda p: p[0])
    return spend_chart(points, float(budget["total_epsilon"]), f"{dataset['party']} / {dataset['name']}")


def _catalogue(request: Request, principal: Principal) -> list[dict[str, Any]]:
    if principal.organisation is None or not allowed(principal, "dataset.register", principal.organisation):
        return []
    try:
        return list(context_of(request).plane.catalogue(principal, principal.organisation))
    except ControlPlaneError:
        return []


def _page(request: Request, consortium_id: int | None, status: int = 200, error: str | None = None) -> Response:
    principal = principal_of(request)
    consortia, chosen = current_consortium(request, consortium_id)
    rows = context_of(request).plane.datasets(principal, chosen) if chosen is not None else []
    for row in rows:
        row["chart"] = budget_chart(row)
    registered = {(r["party"], r["name"]) for r in rows}
    catalogue = [d for d in _catalogue(request, principal) if (d["party"], d["name"]) not in registered]
    return render(request, "datasets.html", {"title": "Datasets", "section": "datasets", "consortia": consortia,
                                             "consortium_id": chosen, "datasets": rows, "catalogue": catalogue,
                                             "error": error}, status=status)


@router.get("/datasets", include_in_schema=False)
def datasets(request: Request, consortium_id: QueryId = None) -> Response:
    return _page(request, consortium_id)


@router.post("/datasets", include_in_schema=False)
def register(request: Request) -> Response:
    form = form_of(request)
    principal = principal_of(request)
    try:
        consortium_id = int(str(form.get("consortium_id", "")))
    except ValueError:
        raise Invalid("choose a consortium", "consortium_id") from None
    name = str(form.get("name", ""))
    try:
        row = context_of(request).plane.register_dataset(principal, consortium_id, principal.organisation or "",
                                                         name)
    except ControlPlaneError as exc:
        return _page(request, consortium_id, status=exc.status, error=exc.message)
    return redirect(request, f"/datasets/{row['id']}", ("ok", f"Dataset {name} registered: schema and row count only."))


@router.get("/datasets/{dataset_id}", include_in_schema=False)
def dataset(request: Request, dataset_id: PathId) -> Response:
    row = context_of(request).plane.dataset(principal_of(request), dataset_id)
    row["chart"] = budget_chart(row)
    return render(request, "dataset.html", {"title": f"Dataset {row['name']}", "section": "datasets", "d": row})
