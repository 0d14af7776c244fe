"""The REST API of the control plane, `/api/v1`: accounts, consortia, members, parties, datasets, jobs,
approvals, rules, runs, reports, models and the audit log. Every route calls the `ControlPlane` service, whose
permission checks (sampan.web.roles) are the same for the console; errors are JSON ``{"error", "field"}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials

from sampan.web import schemas as s
from sampan.web.api_auth import (
    bearer_scheme,
    clear_session_cookie,
    cookie_scheme,
    principal_of_request,
    set_session_cookie,
)
from sampan.web.errors import Forbidden, Unauthenticated
from sampan.web.roles import Principal
from sampan.web.service import ControlPlane
from sampan.web.service_base import row_dict
from sampan.web.sign_in_log import logged_username

__all__ = ["API_PREFIX", "build_router", "plane_of"]

API_PREFIX = "/api/v1"
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": s.Error} for code in (400, 401, 403, 404, 409, 422)}

Id = Annotated[int, Path(ge=1, le=s.MAX_ID)]
Text = Annotated[str, Path(min_length=1, max_length=200)]


def plane_of(request: Request) -> ControlPlane:
    plane: ControlPlane = request.app.state.plane
    return plane


# What a one-time-password principal may still do: read itself, choose its password, sign out (R14-WEB-1).
FIRST_SIGN_IN_PATHS = frozenset({f"{API_PREFIX}/me", f"{API_PREFIX}/me/password", f"{API_PREFIX}/auth/logout"})


def current_principal(request: Request,
                      bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
                      cookie: Annotated[str | None, Depends(cookie_scheme)]) -> Principal:
    principal = principal_of_request(request, plane_of(request).accounts, bearer, cookie)
    if principal.must_change_password and request.url.path.rstrip("/") not in FIRST_SIGN_IN_PATHS:
        raise Forbidden("signed in with a one-time password: choose your own first (POST /api/v1/me/password)",
                        "must_change_password")
    return principal


Who = Annotated[Principal, Depends(current_principal)]
Plane = Annotated[ControlPlane, Depends(plane_of)]


def build_router() -> APIRouter:
    """All `/api/v1` routes (the app factory includes it; the OpenAPI document lists them)."""
    r = APIRouter(prefix=API_PREFIX, responses=_ERRORS)
    _accounts(r)
    _consortia(r)
    _jobs(r)
    _results(r)
    return r


def _accounts(r: APIRouter) -> None:
    @r.get("/health", response_model=s.Health, tags=["meta"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "api": "v1"}

    @r.post("/auth/login", response_model=s.LoginResponse, tags=["auth"])
    def login(body: s.LoginRequest, request: Request, response: Response, plane: Plane) -> dict[str, Any]:
        """Password (+ TOTP code when enrolled) -> session cookie and its CSRF token."""
        try:
            principal = plane.accounts.authenticate(body.username, body.password, body.totp)
        except Unauthenticated as exc:  # every failed attempt is in the audit log (a SIEM watches for bursts)
            plane.audit(None, "sign_in_failed", {"username": logged_username(plane.accounts, body.username),
                                                 "reason": exc.field})  # never a password typed as a name
            raise
        session = plane.accounts.create_session(principal)
        set_session_cookie(response, session, plane.accounts, request.app.state.secure_cookies)
        plane.audit(principal, "signed_in", {"method": "password", "totp": body.totp is not None})
        return {"csrf_token": session.csrf_token, "expires_at": session.expires_at.isoformat(),
                "user": plane.me(principal)}

    @r.post("/auth/logout", status_code=204, tags=["auth"])
    def logout(request: Request, who: Who, plane: Plane) -> Response:
        sid = request.cookies.get("sampan_session")
        if sid:
            plane.accounts.end_session(sid)
            plane.audit(who, "signed_out", {"via": "api"})
        response = Response(status_code=204)
        clear_session_cookie(response)
        return response

    @r.get("/me", response_model=s.Me, tags=["auth"])
    def me(who: Who, plane: Plane) -> dict[str, Any]:
        return plane.me(who)

    @r.post("/me/password", status_code=204, tags=["auth"])
    def change_password(body: s.PasswordChange, request: Request, who: Who, plane: Plane) -> Response:
        """Choose a new password; every other session of the account ends (this one stays signed in)."""
        ended = plane.accounts.set_password(who, body.old_password, body.new_password,
                                            keep_session=request.cookies.get("sampan_session"))
        plane.audit(who, "password_changed", {"sessions_ended": ended, "via": "api"})
        return Response(status_code=204)

    @r.post("/me/totp", response_model=s.TotpEnrolment, tags=["auth"])
    def totp_enrol(who: Who, plane: Plane, body: s.TotpProof | None = None) -> dict[str, Any]:
        """A new authenticator secret; over a confirmed one, `proof` (current password or code) is required and
        the confirmed factor stays in force until the new one is confirmed."""
        secret, uri = plane.accounts.enrol_totp(who, proof=body.proof if body is not None else None)
        plane.audit(who, "totp_enrolment_started", {})
        return {"secret": secret, "provisioning_uri": uri}

    @r.post("/me/totp/confirm", status_code=204, tags=["auth"])
    def totp_confirm(body: s.TotpCode, who: Who, plane: Plane) -> Response:
        plane.accounts.confirm_totp(who, body.code)
        plane.audit(who, "totp_enabled", {})
        return Response(status_code=204)

    @r.get("/me/tokens", response_model=list[s.TokenInfo], tags=["auth"])
    def tokens(who: Who, plane: Plane) -> list[dict[str, Any]]:
        return [row_dict(t) for t in plane.accounts.tokens(who)]

    @r.post("/me/tokens", response_model=s.TokenCreated, status_code=201, tags=["auth"])
    def new_token(body: s.TokenRequest, who: Who, plane: Plane) -> dict[str, Any]:
        from datetime import timedelta

        tid, token = plane.accounts.issue_token(who, body.label, timedelta(days=body.days))
        plane.audit(who, "token_issued", {"token_id": tid, "label": body.label, "days": body.days})
        row = next(t for t in plane.accounts.tokens(who) if t.id == tid)
        return {"id": tid, "token": token, "expires_at": row_dict(row)["expires_at"]}

    @r.delete("/me/tokens/{token_id}", status_code=204, tags=["auth"])
    def revoke_token(token_id: Id, who: Who, plane: Plane) -> Response:
        plane.accounts.revoke_token(who, token_id)
        plane.audit(who, "token_revoked", {"token_id": token_id})
        return Response(status_code=204)

    @r.get("/users", response_model=list[s.UserInfo], tags=["users"])
    def users(who: Who, plane: Plane) -> list[dict[str, Any]]:
        return plane.users(who)

    @r.post("/users", response_model=s.UserCreated, status_code=201, tags=["users"])
    def create_user(body: s.UserCreate, who: Who, plane: Plane) -> dict[str, Any]:
        return plane.create_user(who, body.username, body.role, body.organisation)

    @r.put("/users/{user_id}/disabled", status_code=204, tags=["users"])
    def disable_user(user_id: Id, body: s.UserDisable, who: Who, plane: Plane) -> Response:
        plane.set_user_disabled(who, user_id, body.disabled)
        return Response(status_code=204)


def _consortia(r: APIRouter) -> None:
    @r.get("/consortia", response_model=list[s.Consortium], tags=["consortia"])
    def consortia(who: Who, plane: Plane) -> list[dict[str, Any]]:
        return plane.consortia(who)

    @r.post("/consortia", response_model=s.Consortium, status_code=201, tags=["consortia"])
    def create_consortium(body: s.ConsortiumCreate, who: Who, plane: Plane) -> dict[str, Any]:
        return plane.create_consortium(who, body.name, body.description)

    @r.get("/consortia/{consortium_id}", response_model=s.Consortium, tags=["consortia"])
    def consortium(consortium_id: Id, who: Who, plane: Plane) -> dict[str, Any]:
        return plane.consortium(who, consortium_id)

    @r.post("/consortia/{consortium_id}/members", response_model=s.Invitation, status_code=201, tags=["consortia"])
    def invite(consortium_id: Id, body: s.MemberInvite, who: Who, plane: Plane) -> dict[str, Any]:
        return plane.invite_member(who, consortium_id, body.organisation, body.role, body.certificate_pem,
                                   body.operator_username)

    @r.get("/parties", response_model=list[s.Party], tags=["parties"])
    async def parties(who: Who, plane: Plane) -> list[dict[str, Any]]:
        return await run_in_threadpool(plane.parties, who)

    @r.get("/parties/{party}/catalogue", response_model=list[s.CatalogueEntry], tags=["parties"])
    def catalogue(party: Text, who: Who, plane: Plane) -> list[dict[str, Any]]:
        return plane.catalogue(who, party)

    @r.get("/parties/{party}/budgets", response_model=list[s.Budget], tags=["parties"])
    def budgets(party: Text, who: Who, plane: Plane) -> list[dict[str, Any]]:
        return plane.budgets(who, party)

    @r.get("/parties/{party}/inbox", response_model=list[s.InboxItem], tags=["approvals"])
    def inbox(party: Text, who: Who, plane: Plane) -> list[dict[str, Any]]:
        return plane.inbox(who, party)

    @r.get("/parties/{party}/rules", response_model=list[s.Rule], tags=["approvals"])
    def rules(party: Text, who: Who, plane: Plane) -> list[dict[str, Any]]:
        return plane.rules(who, party)

    @r.post("/parties/{party}/rules", response_model=s.Rule, status_code=201, tags=["approvals"])
    def add_rule(party: Text, body: s.RuleCreate, who: Who, plane: Plane) -> dict[str, Any]:
        return plane.add_rule(who, party, body.rule)

    @r.delete("/parties/{party}/rules/{rule_id}", status_code=204, tags=["approvals"])
    def remove_rule(party: Text, rule_id: Id, who: Who, plane: Plane) -> Response:
        plane.remove_rule(who, party, rule_id)
        return Response(status_code=204)

    @r.get("/consortia/{consortium_id}/datasets", response_model=list[s.Dataset], tags=["datasets"])
    def datasets(consortium_id: Id, who: Who, plane: Plane) -> list[dict[str, Any]]:
        return plane.datasets(who, consortium_id)

    @r.post("/consortia/{consortium_id}/datasets", response_model=s.Dataset, status_code=201, tags=["datasets"])
    def register(consortium_id: Id, body: s.DatasetRegister, who: Who, plane: Plane) -> dict[str, Any]:
        return plane.register_dataset(who, consortium_id, body.party, body.name)

    @r.get("/datasets/{dataset_id}", response_model=s.Dataset, tags=["datasets"])
    def dataset(dataset_id: Id, who: Who, plane: Plane) -> dict[str, Any]:
        return plane.dataset(who, dataset_id)


def _choices(datasets: dict[str, str | s.DatasetChoice] | None) -> dict[str, Any] | None:
    if datasets is None:
        return None
    return {p: c if isinstance(c, str) else c.model_dump() for p, c in datasets.items()}


def _jobs(r: APIRouter) -> None:
    @r.get("/consortia/{consortium_id}/jobs", response_model=list[s.Job], tags=["jobs"])
    def jobs(consortium_id: Id, who: Who, plane: Plane) -> list[dict[str, Any]]:
        return plane.jobs(who, consortium_id)

    @r.post("/consortia/{consortium_id}/jobs", response_model=s.Job, status_code=201, tags=["jobs"])
    def create_job(consortium_id: Id, body: s.JobCreate, who: Who, plane: Plane) -> dict[str, Any]:
        return plane.create_job(who, consortium_id, body.name, body.config, _choices(body.datasets) or {},
                                body.label_holder, body.submit)

    @r.get("/jobs/{job_id}", response_model=s.Job, tags=["jobs"])
    def job(job_id: Id, who: Who, plane: Plane) -> dict[str, Any]:
        return plane.job(who, job_id)

    @r.patch("/jobs/{job_id}", response_model=s.Job, tags=["jobs"])
    def edit_job(job_id: Id, body: s.JobEdit, who: Who, plane: Plane) -> dict[str, Any]:
        """Change a job not yet started: a changed spec voids every approval."""
        return plane.edit_job(who, job_id, name=body.name, config=body.config, datasets=_choices(body.datasets),
                              label_holder=body.label_holder)

    @r.post("/jobs/{job_id}/submit", response_model=s.Job, tags=["jobs"])
    def submit_job(job_id: Id, who: Who, plane: Plane) -> dict[str, Any]:
        return plane.submit_job(who, job_id)

    @r.get("/jobs/{job_id}/approvals", response_model=list[s.ApprovalRecord], tags=["approvals"])
    def approvals(job_id: Id, who: Who, plane: Plane) -> list[dict[str, Any]]:
        return plane.approvals(who, job_id)

    @r.post("/jobs/{job_id}/approvals/{party}", response_model=s.Job, tags=["approvals"])
    def decide(job_id: Id, party: Text, body: s.Decision, who: Who, plane: Plane) -> dict[str, Any]:
        """The party's operator approves (its agent signs) or refuses with a reason."""
        return plane.decide(who, job_id, party, body.approve, body.reason)

    @r.post("/jobs/{job_id}/start", response_model=s.Job, tags=["jobs"])
    def start(job_id: Id, who: Who, plane: Plane) -> dict[str, Any]:
        return plane.start_job(who, job_id)

    @r.post("/jobs/{job_id}/cancel", response_model=s.Job, tags=["jobs"])
    def cancel(job_id: Id, who: Who, plane: Plane) -> dict[str, Any]:
        return plane.cancel_job(who, job_id)


def _results(r: APIRouter) -> None:
    @r.get("/runs", response_model=list[s.RunSummary], tags=["runs"])
    def runs(who: Who, plane: Plane,
             consortium_id: Annotated[int | None, Query(ge=1, le=s.MAX_ID)] = None) -> list[dict[str, Any]]:
        return plane.runs(who, consortium_id)

    @r.get("/runs/compare", response_model=s.Comparison, tags=["runs"])
    def compare(who: Who, plane: Plane,
                ids: Annotated[list[str], Query(min_length=2, max_length=4)]) -> dict[str, Any]:
        return plane.compare(who, ids)

    @r.get("/runs/{run_id}", response_model=s.RunViewBody, tags=["runs"])
    def run_view(run_id: Annotated[str, Path(min_length=1, max_length=64)], who: Who, plane: Plane) -> dict[str, Any]:
        return plane.run_view(who, run_id)

    @r.get("/runs/{run_id}/files", response_model=s.ReportFiles, tags=["runs"])
    def files(run_id: Annotated[str, Path(min_length=1, max_length=64)], who: Who, plane: Plane) -> dict[str, Any]:
        return plane.report_files(who, run_id)

    @r.get("/models", response_model=list[s.ModelSummary], tags=["models"])
    def models(who: Who, plane: Plane) -> list[dict[str, Any]]:
        return plane.models(who)

    @r.get("/models/{name}/{version}", response_model=s.ModelDetail, tags=["models"])
    def model(name: Text, version: Id, who: Who, plane: Plane) -> dict[str, Any]:
        return plane.model(who, name, version)

    @r.post("/models/{name}/{version}/stage", response_model=s.ModelDetail, tags=["models"])
    def stage(name: Text, version: Id, body: s.StageChange, who: Who, plane: Plane) -> dict[str, Any]:
        return plane.set_stage(who, name, version, body.stage, body.note)

    @r.get("/models/{name}/{version}/export", response_model=dict[str, Any], tags=["models"])
    def export(name: Text, version: Id, who: Who, plane: Plane) -> dict[str, Any]:
        """The `sampan-model` JSON document (docs/model_format.md)."""
        return plane.export_model(who, name, version)

    @r.get("/audit", response_model=s.AuditLog, tags=["audit"])
    def audit(who: Who, plane: Plane, limit: Annotated[int, Query(ge=1, le=5000)] = 200,
              actor: Annotated[str | None, Query(max_length=200)] = None) -> dict[str, Any]:
        return plane.audit_log(who, limit, actor)

    @r.get("/audit/verify", response_model=s.Verification, tags=["audit"])
    def verify(who: Who, plane: Plane) -> dict[str, Any]:
        return plane.verify_audit(who)
