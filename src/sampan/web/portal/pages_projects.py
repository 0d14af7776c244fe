"""An applicant's FL projects: the list, a new project (name, benchmark API endpoint, its TLS certificate, the bench
token), the project page (technical questionnaire, qualification check, evaluations).

Every page asks the service (`Portal`), which checks the role and the ownership again: an applicant asking for
another applicant's project gets the same "not found" as for one that does not exist. The bench token is a
password field, never shown back (the service seals it at rest). The questionnaire lists the catalogue's tests by
category; a ticked box is a claim that the platform passes that test, compared later with the measured verdicts.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from sampan.web.errors import ControlPlaneError, Invalid
from sampan.web.portal.pages_base import PathId, PortalRoute, context_of, form_of, principal_of, text
from sampan.web.portal.rendering import redirect, render
from sampan.web.portal.service import PAGE_SIZE

__all__ = ["router", "catalogue_by_category", "PROFILE_CHOICES"]

router = APIRouter(route_class=PortalRoute)

CATEGORY_TITLES = (("functional", "Functional tests"), ("performance", "Performance tests"),
                   ("security", "Security tests"))
PROFILE_CHOICES = (("quick", "quick (about a minute)"), ("standard", "standard (about 15 minutes)"))
MAX_PEM = 20_000


def catalogue_by_category() -> list[tuple[str, str, list[Any]]]:
    """(category, heading, tests) in catalogue order, for the questionnaire and the claims table."""
    from sampan.verify.catalogue.registry import all_tests

    grouped: dict[str, list[Any]] = defaultdict(list)
    for test in all_tests():
        grouped[str(test.category)].append(test)
    return [(key, title, grouped[key]) for key, title in CATEGORY_TITLES if grouped.get(key)]


@router.get("/projects", include_in_schema=False)
def projects(request: Request) -> Response:
    principal = principal_of(request)
    portal = context_of(request).portal
    raw = request.query_params.get("page", "1")
    page = int(raw) if raw.isdigit() and 0 < len(raw) < 7 else 1  # paged: staff see every applicant's projects
    pages = max(1, -(-portal.project_count(principal) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    rows = portal.projects(principal, page=page, per_page=PAGE_SIZE)
    return render(request, "projects.html", {"title": "Projects", "section": "projects", "rows": rows,
                                             "page": page, "pages": pages})


def _new_page(request: Request, values: dict[str, str] | None = None, error: str | None = None,
              field: str | None = None, status: int = 200) -> Response:
    return render(request, "project_new.html", {"title": "New FL project", "section": "projects",
                                                "values": values or {}, "error": error, "error_field": field},
                  status=status)


@router.get("/projects/new", include_in_schema=False)
def new_project_form(request: Request) -> Response:
    principal_of(request)
    return _new_page(request)


@router.post("/projects/new", include_in_schema=False)
def new_project(request: Request) -> Response:
    form, principal = form_of(request), principal_of(request)
    values = {"name": text(form, "name", 200), "endpoint_url": text(form, "endpoint_url", 2000),
              "tls_cert_pem": text(form, "tls_cert_pem", MAX_PEM + 1)}
    token = text(form, "bench_token", 1000)
    if len(values["tls_cert_pem"]) > MAX_PEM:
        return _new_page(request, values, f"The certificate is longer than {MAX_PEM} characters: paste the "
                         "server's certificate (or its CA's) in PEM form only.", "tls_cert_pem", 400)
    try:
        project_id = context_of(request).portal.create_project(principal, values["name"], values["endpoint_url"],
                                                               values["tls_cert_pem"], token)
    except ControlPlaneError as exc:
        return _new_page(request, values, exc.message, exc.field, exc.status)
    return redirect(request, f"/projects/{project_id}",
                    ("ok", "Project created. Next: fill in the technical questionnaire, then run the qualification "
                     "check."))


@router.get("/projects/{project_id}", include_in_schema=False)
def project_page(request: Request, project_id: PathId) -> Response:
    principal, portal = principal_of(request), context_of(request).portal
    project = portal.project(principal, project_id)
    questionnaire = project.get("questionnaire")
    return render(request, "project.html", {
        "title": project["name"], "section": "projects", "project": project, "questionnaire": questionnaire,
        "claims": (questionnaire or {}).get("claims") or {}, "catalogue": catalogue_by_category(),
        "qualification": project.get("last_qualification"), "evaluations": project.get("evaluations") or [],
        "profiles": PROFILE_CHOICES, "can_act": bool(project.get("can_act"))})


@router.post("/projects/{project_id}/questionnaire", include_in_schema=False)
def save_questionnaire(request: Request, project_id: PathId) -> Response:
    from sampan.verify.catalogue.registry import all_tests

    form, principal = form_of(request), principal_of(request)
    claims = {t.id: form.get(f"claim-{t.id}") == "yes" for t in all_tests()}
    context_of(request).portal.save_questionnaire(
        principal, project_id, claims, api_docs_url=text(form, "api_docs_url", 2000),
        implements_reference_api=text(form, "implements_reference_api") == "yes", notes=text(form, "notes", 5000))
    return redirect(request, f"/projects/{project_id}#qualification",
                    ("ok", f"Questionnaire saved: {sum(claims.values())} claimed tests."))


@router.post("/projects/{project_id}/qualify", include_in_schema=False)
def qualify(request: Request, project_id: PathId) -> Response:
    report = context_of(request).portal.qualify(principal_of(request), project_id)
    passed = bool(report.get("passed"))
    note = ("ok", "Qualification passed: you can start the evaluation.") if passed else \
        ("error", "Qualification failed: see what failed and how to fix it below.")
    return redirect(request, f"/projects/{project_id}#qualification", note)


@router.post("/projects/{project_id}/evaluate", include_in_schema=False)
def evaluate(request: Request, project_id: PathId) -> Response:
    profile = text(form_of(request), "profile", 20) or "quick"
    if profile not in dict(PROFILE_CHOICES):
        return redirect(request, f"/projects/{project_id}", ("error", f"Unknown profile {profile!r}."))
    eval_id = context_of(request).portal.start_evaluation(principal_of(request), project_id, profile=profile)
    return redirect(request, f"/evaluations/{eval_id}", ("ok", "Evaluation started: this page follows it live."))


@router.post("/projects/{project_id}/server", include_in_schema=False)
def change_server(request: Request, project_id: PathId) -> Response:
    form = form_of(request)
    pem = text(form, "tls_cert_pem", MAX_PEM + 1)
    if len(pem) > MAX_PEM:
        raise Invalid(f"the certificate is longer than {MAX_PEM} characters: paste the server's certificate (or "
                      "its CA's) in PEM form only", "tls_cert_pem")
    token = text(form, "bench_token", 1000)
    context_of(request).portal.update_project(principal_of(request), project_id,
                                              endpoint_url=text(form, "endpoint_url", 2000), tls_cert_pem=pem,
                                              bench_token=token or None)
    return redirect(request, f"/projects/{project_id}",
                    ("ok", "Server information saved. Run the qualification check again before evaluating."))
