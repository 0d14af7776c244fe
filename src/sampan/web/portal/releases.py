"""Report downloads and the full-report release: an applicant requests it (with an invoice reference), a reviewer
grants or refuses it, and only then does the applicant's full download work.

Why a request a reviewer decides (and no payment processing): the issue models "purchase the full report" as an
approval step; the invoice reference is recorded for the reviewer and the audit log, nothing is charged. The
summary (verdicts, messages, claims) is always available to whoever may see the evaluation; the full report
(evidence, figures, plots, manifest) to reviewers and admins, and to the owner after a grant. Every request,
decision and full download is in the signed audit log.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from sampan.web.errors import Conflict, Forbidden, Invalid, NotFound
from sampan.web.portal import tables as t
from sampan.web.portal.accounts import PortalPrincipal, _new_id
from sampan.web.portal.base import iso
from sampan.web.portal.claims import compare_claims
from sampan.web.portal.evaluations import EvaluationsMixin
from sampan.web.portal.reports import render_report

__all__ = ["ReleasesMixin"]


class ReleasesMixin(EvaluationsMixin):
    """report_file, request_full_report, release_requests, decide_release."""

    def report_file(self, p: PortalPrincipal, evaluation_id: int, fmt: str, full: bool) -> tuple[bytes, str, str]:
        """(bytes, media type, file name) of the summary (`full=False`) or the full report (`full=True`: staff,
        or the owner after a granted release)."""
        row, project = self.evaluation_row(p, evaluation_id)
        if full and not self.release_state(p, row, project)["full_available"]:
            raise Forbidden("the full report is released after a reviewer grants your request", "full")
        evaluation = self.results_of(row)
        checks = compare_claims(self.claims_of(row), evaluation)
        name = re.sub(r"[^A-Za-z0-9_-]+", "-", str(project.name)).strip("-")[:60] or "project"
        out = render_report(evaluation, fmt, full=full, results_dir=Path(row.results_path).parent, checks=checks,
                            name=f"{name}-evaluation-{int(row.id)}")
        if full:
            self.audit(p, "full_report_downloaded", {"evaluation_id": int(row.id), "project_id": int(project.id),
                                                     "format": fmt})
        return out

    def request_full_report(self, p: PortalPrincipal, evaluation_id: int, invoice_reference: str) -> int:
        """Ask for the full report of a finished evaluation (its owner); one open or granted request at a time."""
        row, project = self.evaluation_row(p, evaluation_id)
        if int(project.owner_id) != p.user_id:
            raise Forbidden("only the project's owner requests its full report", "evaluation_id")
        if row.status != "finished":
            raise Conflict(f"evaluation {evaluation_id} is {row.status}: request the full report once it has "
                           "finished", "evaluation_id")
        invoice = (invoice_reference or "").strip()
        if not invoice or len(invoice) > 200:
            raise Invalid("the invoice reference must be 1-200 characters", "invoice_reference")
        try:
            with self.engine.begin() as c:
                self._refuse_if_open(c, int(row.id))
                rid = _new_id(c.execute(insert(t.release_requests).values(
                    evaluation_id=row.id, requested_by=p.user_id, invoice_reference=invoice, status="pending",
                    note="", created_at=self.clock())))
        except IntegrityError:  # a parallel request won the race: the partial unique index refused this one
            with self.engine.connect() as c:
                self._refuse_if_open(c, int(row.id))
            raise Conflict("another request for this report was made at the same moment", "evaluation_id") from None
        self.audit(p, "release_requested", {"request_id": rid, "evaluation_id": int(row.id),
                                            "project_id": int(project.id), "invoice_reference": invoice})
        return rid

    @staticmethod
    def _refuse_if_open(c: Connection, evaluation_id: int) -> None:
        open_one = c.execute(select(t.release_requests.c.id, t.release_requests.c.status).where(
            t.release_requests.c.evaluation_id == evaluation_id,
            t.release_requests.c.status.in_(t.OPEN_RELEASE))).first()
        if open_one is not None:
            raise Conflict(f"request {open_one.id} for this report is already {open_one.status}", "evaluation_id")

    def release_requests(self, p: PortalPrincipal, status: str | None = None) -> list[dict[str, Any]]:
        """Requests the principal may see: an applicant its own, reviewers and admins all (pending first);
        `status` narrows them ("pending" for the reviewer's queue)."""
        query = (select(t.release_requests, t.evaluations.c.project_id, t.evaluations.c.profile,
                        t.projects.c.name.label("project_name"), t.projects.c.owner_id,
                        t.users.c.email.label("requested_by_email"))
                 .join(t.evaluations, t.evaluations.c.id == t.release_requests.c.evaluation_id)
                 .join(t.projects, t.projects.c.id == t.evaluations.c.project_id)
                 .join(t.users, t.users.c.id == t.release_requests.c.requested_by)
                 .order_by(t.release_requests.c.id.desc()))
        if not self.is_staff(p):
            query = query.where(t.projects.c.owner_id == p.user_id)
        if status is not None:
            if status not in t.RELEASE_STATUSES:
                raise Invalid(f"status must be one of {', '.join(t.RELEASE_STATUSES)}", "status")
            query = query.where(t.release_requests.c.status == status)
        with self.engine.connect() as c:
            rows = c.execute(query).all()
        out = [{"id": int(r.id), "evaluation_id": int(r.evaluation_id), "project_id": int(r.project_id),
                "project_name": r.project_name, "profile": r.profile, "requested_by": r.requested_by_email,
                "invoice_reference": r.invoice_reference, "status": r.status, "decided_by": r.decided_by,
                "decided_at": iso(r.decided_at), "note": r.note, "created_at": iso(r.created_at)} for r in rows]
        return sorted(out, key=lambda r: r["status"] != "pending")  # stable: newest first within each group

    def decide_release(self, p: PortalPrincipal, request_id: int, grant: bool, note: str = "") -> None:
        """Grant or refuse a pending request (reviewers and admins)."""
        self.require(p, ("reviewer", "admin"), "deciding a release")
        note = (note or "").strip()
        if len(note) > 2000:
            raise Invalid("the note must be at most 2000 characters", "note")
        status = "granted" if grant else "refused"
        with self.engine.begin() as c:
            row = c.execute(select(t.release_requests).where(t.release_requests.c.id == int(request_id))).first()
            if row is None:
                raise NotFound(f"no release request {request_id}", "request_id")
            done = c.execute(update(t.release_requests).where(t.release_requests.c.id == row.id,
                                                              t.release_requests.c.status == "pending")
                             .values(status=status, decided_by=p.actor, decided_at=self.clock(), note=note))
            if done.rowcount != 1:
                raise Conflict(f"release request {request_id} is already {row.status}", "request_id")
        self.audit(p, "release_decided", {"request_id": int(row.id), "evaluation_id": int(row.evaluation_id),
                                          "granted": bool(grant), "note": note})
