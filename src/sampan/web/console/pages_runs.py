"""Run pages: the list, the live run page (status, progress, per-round metrics per party, epsilon per party and
level, events, cancel), side-by-side comparison of 2-4 runs, and the run's HTML report and privacy receipt.

The live page is complete HTML on every load (works without JS); console.js polls the API's run view every 2 s
and swaps in the freshly rendered live region when it changed. Reports and receipts are served as documents
under their own CSP (no script, no network, sandboxed), whatever their content.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from sampan.privacy.ledger import LEVELS
from sampan.web.console.headers import DOCUMENT_CSP
from sampan.web.console.receipt_view import receipt_view
from sampan.web.console.rendering import PREFIX, redirect, render
from sampan.web.console.session import ConsoleRoute, context_of, principal_of
from sampan.web.errors import Invalid, NotFound

router = APIRouter(route_class=ConsoleRoute)

API_RUN_VIEW = "/api/v1/runs/{run_id}"
FINAL = {"completed", "finished", "failed", "cancelled", "interrupted"}


def fmt(value: Any) -> str:
    """A metric for a table: 4 significant digits for floats, as-is otherwise."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


@router.get("/runs", include_in_schema=False)
def runs(request: Request) -> Response:
    rows = context_of(request).plane.runs(principal_of(request))
    for row in rows:
        row.setdefault("job_name", row.get("name"))
    return render(request, "runs.html", {"title": "Runs", "section": "runs", "runs": rows})


@router.get("/runs/compare", include_in_schema=False)
def compare(request: Request) -> Response:
    ids = list(dict.fromkeys(request.query_params.getlist("run")))
    if not 2 <= len(ids) <= 4:
        raise Invalid("tick 2 to 4 runs to compare", "run")
    cmp = context_of(request).plane.compare(principal_of(request), ids)
    return render(request, "compare.html", {"title": "Compare runs", "section": "runs", "cmp": cmp, "fmt": fmt})


@router.get("/runs/{run_id}", include_in_schema=False)
def run(request: Request, run_id: str) -> Response:
    plane = context_of(request).plane
    principal = principal_of(request)
    view = plane.run_view(principal, run_id)
    view["finished"] = view.get("status") in FINAL
    job = plane.job(principal, int(view["job_id"])) if view.get("job_id") is not None else None
    global_names = sorted({k for r in view["rounds"] for k, v in r["global_metrics"].items()
                           if isinstance(v, (int, float))})
    metric_parties = sorted({p for r in view["rounds"] for p, m in r["party_metrics"].items() if m})
    return render(request, "run.html", {
        "title": f"Run {view.get('name') or run_id}", "section": "runs", "run": view, "job": job, "levels": LEVELS,
        "global_names": global_names, "metric_parties": metric_parties, "fmt": fmt,
        "api_url": API_RUN_VIEW.format(run_id=run_id), "page_url": f"{PREFIX}/runs/{run_id}"})


@router.post("/runs/{run_id}/cancel", include_in_schema=False)
def cancel(request: Request, run_id: str) -> Response:
    plane = context_of(request).plane
    principal = principal_of(request)
    view = plane.run_view(principal, run_id)
    plane.cancel_job(principal, int(view["job_id"]))
    return redirect(request, f"/runs/{run_id}", ("ok", "Cancel sent: the parties stop at the next step."))


def _document(request: Request, run_id: str, key: str) -> Path:
    files = context_of(request).plane.report_files(principal_of(request), run_id)
    path = files.get(key)
    if key == "report_path" and files.get("report_withheld"):  # R14-CHECKS-5: not for this role
        raise NotFound(f"run {run_id}: {files['report_withheld']}", key)
    if not path or not Path(path).is_file():
        raise NotFound(f"run {run_id} has no {key.replace('_path', '')} yet", key)
    return Path(path)


@router.get("/runs/{run_id}/report", include_in_schema=False)
def report(request: Request, run_id: str) -> Response:
    path = _document(request, run_id, "report_path")
    return HTMLResponse(path.read_text(encoding="utf-8"), headers={"content-security-policy": DOCUMENT_CSP})


def _receipt(request: Request, run_id: str) -> Any:
    path = _document(request, run_id, "receipt_path")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError):
        raise NotFound(f"run {run_id}'s receipt is not readable JSON", "receipt_path") from None


@router.get("/runs/{run_id}/receipt", include_in_schema=False)
def receipt(request: Request, run_id: str) -> Response:
    """The receipt as a page a person reads: tables of what each party sent under which protection, epsilon per
    party and level, the consent terms; the raw JSON stays one link away."""
    data = _receipt(request, run_id)
    if not isinstance(data, dict):
        raise NotFound(f"run {run_id}'s receipt is not a JSON object", "receipt_path")
    return render(request, "receipt.html", {"title": f"Privacy receipt of run {run_id}", "section": "runs",
                                            "run_id": run_id, "r": receipt_view(data)})


@router.get("/runs/{run_id}/receipt.json", include_in_schema=False)
def receipt_json(request: Request, run_id: str) -> Response:
    body = json.dumps(_receipt(request, run_id), indent=2, sort_keys=True)
    return Response(body, media_type="application/json",
                    headers={"content-security-policy": DOCUMENT_CSP,
                             "content-disposition": f'inline; filename="{run_id}.receipt.json"'})
