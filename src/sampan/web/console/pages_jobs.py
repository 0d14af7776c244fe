"""Job pages: the list, the wizard (any workflow: parties, datasets, columns per party, model, rounds, privacy per
level), a job's page (its spec and spec hash, each party's decision, submit / start / cancel) and the edit form.

The wizard saves a DRAFT first and shows its spec and hash: what the parties will sign is on screen before anyone
sends it to their inboxes. Editing recomputes the spec; when its hash changes the control plane voids every
approval, and the page says so.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from sampan.errors import SampanError
from sampan.web.console.pages_datasets import current_consortium
from sampan.web.console.rendering import redirect, render
from sampan.web.console.session import ConsoleRoute, PathId, QueryId, context_of, form_of, principal_of
from sampan.web.console.wizard import ACCOUNTANTS, MODEL_KINDS, WORKFLOWS, build_job
from sampan.web.errors import ControlPlaneError, Invalid
from sampan.web.roles import require
from sampan.web.schemas import MAX_CONFIG_BYTES, bounded_config

router = APIRouter(route_class=ConsoleRoute)


@router.get("/jobs", include_in_schema=False)
def jobs(request: Request, consortium_id: QueryId = None) -> Response:
    consortia, chosen = current_consortium(request, consortium_id)
    rows = context_of(request).plane.jobs(principal_of(request), chosen) if chosen is not None else []
    return render(request, "jobs.html", {"title": "Jobs", "section": "jobs", "consortia": consortia,
                                         "consortium_id": chosen, "jobs": rows})


def _wizard(request: Request, consortium_id: int | None, form: dict[str, Any], error: str | None = None,
            field: str | None = None, status: int = 200) -> Response:
    consortia, chosen = current_consortium(request, consortium_id)
    datasets = context_of(request).plane.datasets(principal_of(request), chosen) if chosen is not None else []
    by_party: dict[str, list[dict[str, Any]]] = {}
    for d in datasets:
        by_party.setdefault(d["party"], []).append(d)
    return render(request, "job_new.html", {
        "title": "New job", "section": "jobs", "consortia": consortia, "consortium_id": chosen,
        "by_party": by_party, "workflows": WORKFLOWS, "model_kinds": MODEL_KINDS, "accountants": ACCOUNTANTS,
        "form": form, "error": error, "error_field": field, "chosen_parties": _list(form.get("party")),
        "chosen_columns": {k: _list(v) for k, v in form.items() if k.startswith("columns.")}}, status=status)


def _list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


@router.get("/jobs/new", include_in_schema=False)
def new_job(request: Request, consortium_id: QueryId = None) -> Response:
    require(principal_of(request), "job.create")
    return _wizard(request, consortium_id, {})


@router.post("/jobs", include_in_schema=False)
def create_job(request: Request) -> Response:
    form = form_of(request)
    try:
        consortium_id = int(str(form.get("consortium_id", "")))
    except ValueError:
        raise Invalid("choose a consortium", "consortium_id") from None
    name = str(form.get("name", "")).strip()
    try:
        config, datasets, label_holder = build_job(form, name)
        job = context_of(request).plane.create_job(principal_of(request), consortium_id, name, config, datasets,
                                                   label_holder, submit=False)
    except ControlPlaneError as exc:
        return _wizard(request, consortium_id, form, exc.message, exc.field, status=exc.status)
    return redirect(request, f"/jobs/{job['id']}",
                    ("info", "Draft saved. Check the spec and its hash, then send it to the parties."))


def _job_page(request: Request, job_id: int, status: int = 200, **extra: Any) -> Response:
    plane = context_of(request).plane
    principal = principal_of(request)
    job = plane.job(principal, job_id)
    decisions = {d["party"]: d for d in plane.approvals(principal, job_id)}
    return render(request, "job.html", {
        "title": f"Job {job['name']}", "section": "jobs", "job": job, "decisions": decisions,
        "spec_json": json.dumps(job["spec"], indent=2, sort_keys=True),
        "config_json": extra.pop("config_json", None) or json.dumps(job["config"], indent=2, sort_keys=True),
        "error": None, **extra}, status=status)


@router.get("/jobs/{job_id}", include_in_schema=False)
def job(request: Request, job_id: PathId) -> Response:
    return _job_page(request, job_id)


@router.post("/jobs/{job_id}/submit", include_in_schema=False)
def submit(request: Request, job_id: PathId) -> Response:
    context_of(request).plane.submit_job(principal_of(request), job_id)
    return redirect(request, f"/jobs/{job_id}", ("ok", "Sent to the parties' approval inboxes."))


@router.post("/jobs/{job_id}/start", include_in_schema=False)
def start(request: Request, job_id: PathId) -> Response:
    try:
        job = context_of(request).plane.start_job(principal_of(request), job_id)
    except ControlPlaneError as exc:
        return _job_page(request, job_id, status=exc.status, error=exc.message)
    except SampanError as exc:  # the coordinator refused the run config (e.g. a privacy setting): say so on the job
        return _job_page(request, job_id, status=400, error=f"The coordinator cannot start this job: "
                                                            f"{exc.user_message()}")
    return redirect(request, f"/runs/{job['run_id']}", ("ok", "The job started."))


@router.post("/jobs/{job_id}/cancel", include_in_schema=False)
def cancel(request: Request, job_id: PathId) -> Response:
    context_of(request).plane.cancel_job(principal_of(request), job_id)
    return redirect(request, f"/jobs/{job_id}", ("ok", "The job is cancelled."))


@router.post("/jobs/{job_id}/edit", include_in_schema=False)
def edit(request: Request, job_id: PathId) -> Response:
    form = form_of(request)
    text = str(form.get("config", ""))
    try:
        if len(text) > MAX_CONFIG_BYTES:
            raise Invalid(f"the run config is larger than {MAX_CONFIG_BYTES} bytes", "config")
        try:
            config = json.loads(text)
        except (ValueError, RecursionError) as exc:  # a text nested thousands deep is bad input, not a 500
            raise Invalid(f"the run config is not valid JSON: {str(exc)[:200]}", "config") from None
        if not isinstance(config, dict):
            raise Invalid("the run config must be a JSON object", "config")
        try:
            bounded_config(config)
        except ValueError as exc:  # R14-WEB-12
            raise Invalid(str(exc), "config") from None
        before = context_of(request).plane.job(principal_of(request), job_id)["spec_hash"]
        after = context_of(request).plane.edit_job(principal_of(request), job_id,
                                                   name=str(form.get("name", "")).strip() or None, config=config)
    except ControlPlaneError as exc:
        return _job_page(request, job_id, status=exc.status, error=exc.message, config_json=text)
    note = ("info", "Saved. The spec changed, so every approval was voided: the parties decide again.") \
        if after["spec_hash"] != before else ("ok", "Saved. The spec did not change; approvals stand.")
    return redirect(request, f"/jobs/{job_id}", note)
