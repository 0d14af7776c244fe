"""The verification portal's service: projects, questionnaires, qualification, evaluations, reports and releases.

Why a service under the pages: every rule (who may see and do what, what is audited, that the bench token never
comes back) lives here once, so the pages (`sampan.web.portal.app`), the CLI and the tests go through the same
checks. Every method takes the acting `PortalPrincipal` first. An applicant sees and acts on its own projects only;
another applicant's project, evaluation or release request answers NotFound as if absent. Reviewers read
everything and decide release requests; admins may do everything. Threat model: a malicious applicant with a
valid session tries to read or act on others' projects (NotFound), to get the full report without a granted
release (Forbidden), or to get its stored token or another's back (never returned; sealed at rest); the endpoint
side (SSRF, bounded runs) is `sampan.verify.egress` and the runner's job.
Split: `base` (shared checks, audit), `evaluations` (background runs, progress, claims), `releases` (report
downloads and full-report releases); this module holds projects, questionnaires, qualification and admin reads.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, insert, select, update

from sampan.web.errors import Conflict, Invalid
from sampan.web.portal import tables as t
from sampan.web.portal.accounts import PortalPrincipal, _new_id
from sampan.web.portal.base import AUDIT_CHAIN, PortalBase, iso, scrub, server_fingerprint
from sampan.web.portal.evaluations import EvaluationsMixin
from sampan.web.portal.limits import RateLimited, hold, reserve
from sampan.web.portal.releases import ReleasesMixin

__all__ = ["Portal"]

log = logging.getLogger("sampan.portal")
_URL = re.compile(r"^https?://[^\s/?#@]+(?::\d{1,5})?(?:/[^\s]*)?$", re.IGNORECASE)
_MAX_TOKEN = 4096
_MAX_PEM = 64 * 1024
PAGE_SIZE = 50  # projects per page of `projects()` (staff lists grow with every applicant's projects)
_CHANGED: dict[str, Any] = {"name": "server information changed", "ok": False, "status": "failed",
            "detail": "the endpoint, certificate or token changed while this check ran: the check does not count "
                      "for the new server information",
            "fix": "Run the qualification check again now that the server information is final."}


def _check_url(value: str, field: str, *, required: bool = True) -> str:
    url = (value or "").strip()
    if not url and not required:
        return ""
    if len(url) > 2000 or not _URL.match(url):
        raise Invalid(f"{field.replace('_', ' ')} must be an http(s) URL without user name or password, "
                      "like https://fl.example.com/bench/v1", field)
    return url


def _check_pem(value: str) -> str:
    pem = (value or "").strip()
    if not pem:
        return ""
    if len(pem) > _MAX_PEM:
        raise Invalid("the TLS certificate is larger than 64 KiB: paste the server or CA certificate only",
                      "tls_cert_pem")
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise Invalid("the TLS certificate is not a PEM certificate (-----BEGIN CERTIFICATE----- ...)",
                      "tls_cert_pem") from None
    return pem + "\n"


class Portal(ReleasesMixin, EvaluationsMixin, PortalBase):
    """`Portal(store, folder, *, egress, runner=None, clock=None, accounts=None, qualifier=None, limits=None)`.

    `egress`: the `sampan.verify.egress.EgressPolicy` every connection to an applicant's endpoint obeys;
    `runner`: the background `EvaluationRunner` (None: evaluations are refused); `accounts`: a `PortalAccounts`
    (default: one on the store's engine at argon2's defaults); `qualifier`: the qualification function
    (default `sampan.verify.qualify.qualify`; tests pass their own); `limits`: the `RateLimits` on qualification
    checks and evaluation starts (default `RateLimits()`: 10 checks per project and 30 per applicant an hour,
    5 evaluation starts per applicant a day, 25 projects per applicant, one check in flight per account and four
    in the process)."""

    # --- projects --------------------------------------------------------------------------------
    def create_project(self, p: PortalPrincipal, name: str, endpoint_url: str, tls_cert_pem: str,
                       bench_token: str) -> int:
        """A new project owned by the applicant; the bench token is sealed at once and never shown back."""
        self.require(p, ("applicant", "admin"), "creating a project")
        name = (name or "").strip()
        if not name or len(name) > 200:
            raise Invalid("the project name must be 1-200 characters", "name")
        url = _check_url(endpoint_url, "endpoint_url")
        pem = _check_pem(tls_cert_pem)
        token = (bench_token or "").strip()
        if not token or len(token) > _MAX_TOKEN or any(ch.isspace() for ch in token):
            raise Invalid(f"the bench token must be 1-{_MAX_TOKEN} characters without spaces", "bench_token")
        now = self.clock()
        cap = self.limits.projects_per_applicant if p.role == "applicant" else None
        owned, pid = 0, 0
        with self.engine.begin() as c:
            if cap is not None:  # R17-PORTAL-11; serialised per account, so parallel requests cannot pass it
                hold(c, f"projects:user:{p.user_id}", now)
                owned = int(c.execute(select(func.count()).select_from(t.projects)
                                      .where(t.projects.c.owner_id == p.user_id)).scalar() or 0)
            if cap is None or owned < cap:
                pid = _new_id(c.execute(insert(t.projects).values(
                    owner_id=p.user_id, name=name, endpoint_url=url, tls_cert_pem=pem, bench_token_sealed="",
                    created_at=now)))
                c.execute(update(t.projects).where(t.projects.c.id == pid).values(
                    bench_token_sealed=self.seal.seal(pid, token)))
        if cap is not None and owned >= cap:
            self.audit(p, "project_refused", {"reason": "projects per applicant", "owned": owned, "max": cap})
            raise Conflict(f"your account has {owned} projects, the most this portal allows ({cap}): change an "
                           "existing project's server information instead, or ask the portal's operators to raise "
                           "the limit", "account")
        self.audit(p, "project_created", {"project_id": pid, "name": name, "endpoint_url": url,
                                          "tls_cert": bool(pem)})
        return pid

    def update_project(self, p: PortalPrincipal, project_id: int, *, endpoint_url: str | None = None,
                       tls_cert_pem: str | None = None, bench_token: str | None = None) -> None:
        """Change the server information (a failed qualification's usual fix); None leaves a field as it is.
        Any change voids the last qualification: the new endpoint, certificate or token must pass it again."""
        row = self.own_project_row(p, project_id, "change the project")
        values: dict[str, Any] = {}
        if endpoint_url is not None:
            values["endpoint_url"] = _check_url(endpoint_url, "endpoint_url")
        if tls_cert_pem is not None:
            values["tls_cert_pem"] = _check_pem(tls_cert_pem)
        if bench_token is not None:
            token = bench_token.strip()
            if not token or len(token) > _MAX_TOKEN or any(ch.isspace() for ch in token):
                raise Invalid(f"the bench token must be 1-{_MAX_TOKEN} characters without spaces", "bench_token")
            values["bench_token_sealed"] = self.seal.seal(int(row.id), token)
        if not values:
            return
        changed = sorted("bench_token" if k == "bench_token_sealed" else k for k in values)
        stale = [{"name": "server information changed", "ok": False, "status": "failed",
                  "detail": f"{', '.join(c.replace('_', ' ') for c in changed)} changed after the last check",
                  "fix": "Run the qualification check again for the new server information."}]
        with self.engine.begin() as c:  # a passed check of the old endpoint must not let the new one be evaluated
            c.execute(update(t.projects).where(t.projects.c.id == row.id).values(**values))
            new = c.execute(select(t.projects).where(t.projects.c.id == row.id)).first()
            c.execute(insert(t.qualifications).values(project_id=row.id, status="failed", checks=stale,
                                                      requested_by=p.actor, pinned_ip=None, at=self.clock(),
                                                      server_fingerprint=server_fingerprint(new)))
        self.audit(p, "project_updated", {"project_id": int(row.id), "changed": changed,
                                          **({"endpoint_url": values["endpoint_url"]} if "endpoint_url" in values
                                             else {})})

    def _project_dict(self, row: Any, owner: Any = None) -> dict[str, Any]:
        out = {"id": int(row.id), "name": row.name, "endpoint_url": row.endpoint_url,
               "tls_cert_pem": row.tls_cert_pem, "has_bench_token": bool(row.bench_token_sealed),
               "owner_id": int(row.owner_id), "created_at": iso(row.created_at)}
        if owner is not None:
            out.update(owner_email=owner.email, company=owner.company)
        with self.engine.connect() as c:
            q = c.execute(select(t.questionnaires.c.submitted_at)
                          .where(t.questionnaires.c.project_id == row.id)).first()
            qual = c.execute(select(t.qualifications.c.status, t.qualifications.c.server_fingerprint)
                             .where(t.qualifications.c.project_id == row.id)
                             .order_by(t.qualifications.c.id.desc()).limit(1)).first()
            ev = c.execute(select(t.evaluations.c.id, t.evaluations.c.status)
                           .where(t.evaluations.c.project_id == row.id)
                           .order_by(t.evaluations.c.id.desc()).limit(1)).first()
        out["questionnaire_saved"] = q is not None
        out["qualification"] = (None if qual is None else "passed" if self.qualifies(row, qual) else "failed")
        out["last_evaluation"] = {"id": int(ev.id), "status": ev.status} if ev is not None else None
        return out

    def projects(self, p: PortalPrincipal, *, page: int = 1, per_page: int = PAGE_SIZE) -> list[dict[str, Any]]:
        """One page (1-based; ``per_page`` at most 200) of the projects the principal may see (an applicant: its
        own; staff: all), newest first; `project_count` says how many there are in all."""
        per_page = max(1, min(int(per_page), 200))
        query = (select(t.projects, t.users.c.email, t.companies.c.name.label("company"))
                 .join(t.users, t.users.c.id == t.projects.c.owner_id)
                 .outerjoin(t.companies, t.companies.c.id == t.users.c.company_id)
                 .order_by(t.projects.c.id.desc()).limit(per_page).offset((max(1, int(page)) - 1) * per_page))
        if not self.is_staff(p):
            query = query.where(t.projects.c.owner_id == p.user_id)
        with self.engine.connect() as c:
            rows = c.execute(query).all()
        return [self._project_dict(r, r) for r in rows]

    def project_count(self, p: PortalPrincipal) -> int:
        """How many projects `projects` pages through for this principal."""
        query = select(func.count()).select_from(t.projects)
        if not self.is_staff(p):
            query = query.where(t.projects.c.owner_id == p.user_id)
        with self.engine.connect() as c:
            return int(c.execute(query).scalar() or 0)

    def project(self, p: PortalPrincipal, project_id: int) -> dict[str, Any]:
        """One project with its questionnaire, latest qualification and evaluations (never the token)."""
        row = self.project_row(p, project_id)
        with self.engine.connect() as c:
            owner = c.execute(select(t.users.c.email, t.companies.c.name.label("company"))
                              .outerjoin(t.companies, t.companies.c.id == t.users.c.company_id)
                              .where(t.users.c.id == row.owner_id)).first()
        out = self._project_dict(row, owner)
        out["questionnaire"] = self.questionnaire(p, project_id)
        out["last_qualification"] = self.last_qualification(p, project_id)
        out["evaluations"] = self.evaluations(p, project_id)
        out["can_act"] = int(row.owner_id) == p.user_id or p.role == "admin"
        return out

    # --- questionnaire ---------------------------------------------------------------------------
    def save_questionnaire(self, p: PortalPrincipal, project_id: int, claims: Mapping[str, bool], api_docs_url: str,
                           implements_reference_api: bool, notes: str) -> None:
        """Save (or replace) the technical questionnaire: `claims` maps catalogue test ids to "we pass it"."""
        row = self.own_project_row(p, project_id, "fill in the questionnaire")
        from sampan.web.portal.claims import catalogue_titles

        known = catalogue_titles()
        if not isinstance(claims, Mapping):
            raise Invalid("claims must map catalogue test ids to true/false", "claims")
        unknown = sorted(str(k) for k in claims if k not in known)
        if unknown:
            raise Invalid(f"claims name tests the catalogue does not have: {', '.join(unknown[:5])}", "claims")
        clean_claims = {k: bool(v) for k, v in claims.items()}
        docs = _check_url(api_docs_url, "api_docs_url", required=False)
        notes = (notes or "").strip()
        if len(notes) > 10_000:
            raise Invalid("notes must be at most 10000 characters", "notes")
        values = {"claims": clean_claims, "api_docs_url": docs,
                  "implements_reference_api": bool(implements_reference_api), "notes": notes,
                  "submitted_at": self.clock()}
        with self.engine.begin() as c:
            done = c.execute(update(t.questionnaires).where(t.questionnaires.c.project_id == row.id).values(**values))
            if done.rowcount == 0:
                c.execute(insert(t.questionnaires).values(project_id=row.id, **values))
        self.audit(p, "questionnaire_saved", {"project_id": int(row.id),
                                              "claimed": sorted(k for k, v in clean_claims.items() if v),
                                              "implements_reference_api": bool(implements_reference_api)})

    def questionnaire(self, p: PortalPrincipal, project_id: int) -> dict[str, Any] | None:
        row = self.project_row(p, project_id)
        with self.engine.connect() as c:
            q = c.execute(select(t.questionnaires).where(t.questionnaires.c.project_id == row.id)).first()
        if q is None:
            return None
        return {"claims": dict(q.claims), "api_docs_url": q.api_docs_url,
                "implements_reference_api": bool(q.implements_reference_api), "notes": q.notes,
                "submitted_at": iso(q.submitted_at)}

    # --- qualification ---------------------------------------------------------------------------
    def qualify(self, p: PortalPrincipal, project_id: int) -> dict[str, Any]:
        """Run the qualification check against the project's endpoint; store, audit and return its report
        ({"id", "passed", "status", "checks": [{"name", "ok", "status", "detail", "fix"}], "at"}; a check's
        status is passed, failed or skipped: not run because an earlier one failed)."""
        row = self.own_project_row(p, project_id, "run the qualification check")
        try:  # R17-PORTAL-10: a slot first (one check per account in flight), so a refusal costs no hourly budget
            with self.check_slots.take(f"user:{p.user_id}", self.limits.checks_in_flight_per_account,
                                       self.limits.checks_in_flight_total):
                return self._qualify(p, row)
        except Conflict as exc:
            if exc.field in ("account", "project_id") and "qualification check" in exc.message:
                self.audit(p, "qualification_refused", {"project_id": int(row.id), "reason": exc.message})
            raise

    def _qualify(self, p: PortalPrincipal, row: Any) -> dict[str, Any]:
        try:  # counted before the outbound requests: a check still running, or a restart, frees nothing
            with self.engine.begin() as c:
                reserve(c, self.limits.for_qualify(int(row.id), p.user_id, p.role == "applicant"), self.clock())
        except RateLimited as exc:
            self.audit_refusal(p, exc, "qualification", {"project_id": int(row.id)})
            raise
        checked = server_fingerprint(row)  # what this check is about; compared again when its result is stored
        token = self.bench_token(row)
        qualifier = self._qualifier
        if qualifier is None:
            from sampan.verify.qualify import qualify

            qualifier = qualify
        try:
            report = qualifier(row.endpoint_url, token, row.tls_cert_pem or None, self.egress)
            checks = [{"name": str(c.name), "ok": bool(c.ok), "detail": str(c.detail or ""), "fix": str(c.fix or ""),
                       "status": "skipped" if getattr(c, "skipped", False) else "passed" if c.ok else "failed"}
                      for c in report.checks]
            passed = bool(report.passed) and all(c["ok"] for c in checks)
            pinned = getattr(report, "pinned_ip", None)
        except Exception as exc:  # the check itself broke: a failed qualification naming why, never a 500
            log.warning("qualification of project %s raised %s", row.id, type(exc).__name__)
            checks = [{"name": "qualification", "ok": False, "status": "failed",
                       "detail": f"{type(exc).__name__}: {exc}",
                       "fix": "Check the endpoint URL and certificate, then run the check again; if it persists, "
                              "tell the portal's operators."}]
            passed, pinned = False, None
        checks = scrub(checks, token)
        now = self.clock()
        with self.engine.begin() as c:
            # R17-PORTAL-1: compare-and-set. A change made while the check ran (update_project, another tab) means
            # the result is about server information the project no longer has: stored as failed. Should a change
            # still slip in after this read, the row keeps the OLD fingerprint and `qualifies` refuses it anyway.
            now_row = c.execute(select(t.projects).where(t.projects.c.id == row.id)).first()
            if now_row is None or server_fingerprint(now_row) != checked:
                passed, checks = False, [*checks, dict(_CHANGED)]
            qid = _new_id(c.execute(insert(t.qualifications).values(
                project_id=row.id, status="passed" if passed else "failed", checks=checks, requested_by=p.actor,
                pinned_ip=str(pinned)[:64] if pinned else None, at=now, server_fingerprint=checked)))
        self.audit(p, "qualification", {"project_id": int(row.id), "qualification_id": qid, "passed": passed,
                                        "failed_checks": [c["name"] for c in checks if c["status"] == "failed"]})
        return {"id": qid, "passed": passed, "status": "passed" if passed else "failed", "checks": checks,
                "at": iso(now)}

    def last_qualification(self, p: PortalPrincipal, project_id: int) -> dict[str, Any] | None:
        row = self.project_row(p, project_id)
        with self.engine.connect() as c:
            q = c.execute(select(t.qualifications).where(t.qualifications.c.project_id == row.id)
                          .order_by(t.qualifications.c.id.desc()).limit(1)).first()
        if q is None:
            return None
        passed = self.qualifies(row, q)
        checks = list(q.checks)
        if q.status == "passed" and not passed:  # the server information changed after it was written
            checks.append(dict(_CHANGED))
        return {"id": int(q.id), "passed": passed, "status": "passed" if passed else "failed", "checks": checks,
                "at": iso(q.at)}

    # --- admin ------------------------------------------------------------------------------------
    def audit_entries(self, p: PortalPrincipal, limit: int = 500) -> list[dict[str, Any]]:
        """The portal's audit chain, newest first (reviewers and admins)."""
        self.require(p, ("reviewer", "admin"), "reading the audit log")
        rows = self.store.events(AUDIT_CHAIN)
        return [{"seq": int(getattr(r, "seq", 0) or 0), "at": iso(r.at), "kind": r.kind, "detail": r.detail,
                 "hash": r.hash} for r in reversed(rows[-limit:])]

    def audit_verified(self, p: PortalPrincipal) -> bool:
        """Whether the portal's audit chain verifies (hashes, order, signatures)."""
        self.require(p, ("reviewer", "admin"), "checking the audit log")
        return self.store.verify_events(AUDIT_CHAIN)

    def users(self, p: PortalPrincipal) -> list[dict[str, Any]]:
        self.require(p, ("admin",), "listing accounts")
        return self.accounts.users()

    def create_user(self, p: PortalPrincipal, email: str, role: str) -> str:
        """A reviewer, admin or applicant account made by an admin: its one-time password (shown once)."""
        self.require(p, ("admin",), "creating accounts")
        return self.accounts.create_user(email, role, by=p.actor)

    def set_disabled(self, p: PortalPrincipal, user_id: int, disabled: bool) -> None:
        self.require(p, ("admin",), "disabling accounts")
        if user_id == p.user_id and disabled:
            raise Invalid("an admin cannot disable its own account", "user_id")
        self.accounts.set_disabled(user_id, disabled, by=p.actor)
