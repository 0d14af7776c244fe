"""Model registry pages: every registered model with its stage (candidate, approved, retired), one model's lineage
(run, job, spec hash, the parties' signed approvals) and stage history, promotion/retirement, and export as the
`sampan-model` JSON document (a download)."""

from __future__ import annotations

import json
import re

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from sampan.web.console.rendering import redirect, render
from sampan.web.console.session import ConsoleRoute, PathId, context_of, form_of, principal_of

router = APIRouter(route_class=ConsoleRoute)

NEXT_STAGES = {"candidate": ("approved", "retired"), "approved": ("retired",), "retired": ()}


@router.get("/models", include_in_schema=False)
def models(request: Request) -> Response:
    rows = context_of(request).plane.models(principal_of(request))
    return render(request, "models.html", {"title": "Model registry", "section": "models", "models": rows})


@router.get("/models/{name}/{version}", include_in_schema=False)
def model(request: Request, name: str, version: PathId) -> Response:
    row = context_of(request).plane.model(principal_of(request), name, version)
    return render(request, "model.html", {"title": f"Model {name} v{version}", "section": "models", "m": row,
                                          "next_stages": NEXT_STAGES.get(row["stage"], ())})


@router.post("/models/{name}/{version}/stage", include_in_schema=False)
def set_stage(request: Request, name: str, version: PathId) -> Response:
    form = form_of(request)
    stage = str(form.get("stage", ""))
    context_of(request).plane.set_stage(principal_of(request), name, version, stage, str(form.get("note", "")))
    return redirect(request, f"/models/{name}/{version}", ("ok", f"Model {name} v{version} is now {stage}."))


@router.get("/models/{name}/{version}/export", include_in_schema=False)
def export(request: Request, name: str, version: PathId) -> Response:
    document = context_of(request).plane.export_model(principal_of(request), name, version)
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", f"{name}-v{version}.sampan-model.json")
    return Response(json.dumps(document, indent=2, sort_keys=True), media_type="application/json",
                    headers={"content-disposition": f'attachment; filename="{filename}"'})
