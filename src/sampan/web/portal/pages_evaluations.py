"""An evaluation: live progress while it runs, then the online report (verdicts and messages, the claims compared
with the measurements), downloads, and the request for the full report (per-test evidence, manifest).

Why the online report is a summary: the full report (evidence, thresholds, the manifest that reproduces the run) is
the product a vendor buys; `Portal.report_file(full=True)` refuses it until a reviewer granted the request (or to a
reviewer/admin). Downloads are attachments with the document CSP (no script, no network, sandboxed), so a report
opened from the portal's origin cannot act as the signed-in person. Progress is JSON the page's static script polls.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sampan.web.console.headers import DOCUMENT_CSP
from sampan.web.errors import Invalid
from sampan.web.portal.pages_base import PathId, PortalRoute, context_of, form_of, principal_of, text
from sampan.web.portal.rendering import redirect, render

__all__ = ["router", "FORMATS", "FINAL"]

router = APIRouter(route_class=PortalRoute)

FORMATS = {"html": "HTML", "pdf": "PDF", "json": "JSON", "junit": "JUnit XML"}
FINAL = ("finished", "failed", "cancelled")


@router.get("/evaluations/{eval_id}", include_in_schema=False)
def evaluation_page(request: Request, eval_id: PathId) -> Response:
    principal, portal = principal_of(request), context_of(request).portal
    evaluation = portal.evaluation(principal, eval_id)
    requests = [r for r in portal.release_requests(principal) if r["evaluation_id"] == eval_id]
    return render(request, "evaluation.html", {
        "title": f"Evaluation {eval_id}", "section": "projects", "ev": evaluation, "eval_id": eval_id,
        "outcomes": evaluation.get("outcomes") or [], "formats": FORMATS, "final": FINAL, "requests": requests,
        "full_allowed": bool((evaluation.get("release") or {}).get("full_available"))})


@router.get("/evaluations/{eval_id}/progress.json", include_in_schema=False)
def evaluation_progress(request: Request, eval_id: PathId) -> Response:
    evaluation = context_of(request).portal.evaluation(principal_of(request), eval_id)
    progress = evaluation.get("progress") or {}
    return JSONResponse({"status": evaluation.get("status"), "final": evaluation.get("status") in FINAL,
                         "index": progress.get("index", 0), "total": progress.get("total", 0),
                         "test_id": progress.get("test_id"), "done": progress.get("done", [])[-200:]})


@router.get("/evaluations/{eval_id}/download/{fmt}", include_in_schema=False)
def download(request: Request, eval_id: PathId, fmt: str, full: int = 0) -> Response:
    if fmt not in FORMATS:
        raise Invalid(f"unknown report format {fmt[:20]!r}: choose one of {', '.join(FORMATS)}", "format")
    body, media_type, filename = context_of(request).portal.report_file(principal_of(request), eval_id, fmt,
                                                                        bool(full))
    safe_name = "".join(ch for ch in str(filename) if ch.isalnum() or ch in "-_.")[:120] or f"report.{fmt}"
    return Response(body, media_type=media_type, headers={
        "content-disposition": f'attachment; filename="{safe_name}"', "content-security-policy": DOCUMENT_CSP})


@router.post("/evaluations/{eval_id}/full-report", include_in_schema=False)
def request_full_report(request: Request, eval_id: PathId) -> Response:
    invoice = text(form_of(request), "invoice_reference", 200)
    context_of(request).portal.request_full_report(principal_of(request), eval_id, invoice)
    return redirect(request, f"/evaluations/{eval_id}",
                    ("ok", "Full report requested: a reviewer will release it after checking the invoice."))


@router.post("/evaluations/{eval_id}/cancel", include_in_schema=False)
def cancel(request: Request, eval_id: PathId) -> Response:
    context_of(request).portal.cancel_evaluation(principal_of(request), eval_id)
    return redirect(request, f"/evaluations/{eval_id}", ("ok", "Evaluation cancelled."))
