"""Evaluations as background jobs: start (after a passed qualification), live progress, the finished summary.

Why the portal only records: the runner (`sampan.web.portal.runner.EvaluationRunner`) runs the catalogue in a
bounded subprocess and calls back `on_progress(dict)` and `on_done(status, results_dir, error)` from its own
thread; each call is one small UPDATE here, so the page polls the database and never the runner. A callback for an
evaluation that already ended (cancelled meanwhile) changes nothing. The token goes to the runner inside the
`TargetSpec` and nowhere else: errors and progress that come back are scrubbed of it before they are stored.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from sampan.errors import ConfigError
from sampan.verify.results import Evaluation, load_evaluation
from sampan.web.errors import Conflict, Invalid
from sampan.web.portal import tables as t
from sampan.web.portal.accounts import PortalPrincipal, _new_id
from sampan.web.portal.base import PortalBase, iso, scrub
from sampan.web.portal.claims import compare_claims
from sampan.web.portal.limits import RateLimited, reserve

__all__ = ["EvaluationsMixin", "RunnerLike", "ACTIVE"]

log = logging.getLogger("sampan.portal")
ACTIVE = t.ACTIVE_EVALUATION
_ENDED = ("finished", "failed", "cancelled")


class RunnerLike(Protocol):
    """What the portal needs of an evaluation runner (P2's `EvaluationRunner`, or a test's fake)."""

    def start(self, job_id: int, target: Any, profile: str, on_progress: Any, on_done: Any) -> None: ...

    def cancel(self, job_id: int) -> None: ...


def _empty_progress() -> dict[str, Any]:
    return {"index": 0, "total": 0, "test_id": None, "done": []}


def _clean_progress(progress: Any) -> dict[str, Any]:
    """Only the agreed keys, plain types: a runner's line never puts arbitrary data in the table."""
    if not isinstance(progress, dict):
        return _empty_progress()
    raw_done = progress.get("done")
    done: list[Any] = raw_done if isinstance(raw_done, list) else []
    return {"index": int(progress.get("index") or 0), "total": int(progress.get("total") or 0),
            "test_id": str(progress["test_id"])[:100] if progress.get("test_id") else None,
            "done": [{"test_id": str(d.get("test_id", ""))[:100], "verdict": str(d.get("verdict", ""))[:20]}
                     for d in done[:500] if isinstance(d, dict)]}


class EvaluationsMixin(PortalBase):
    """start_evaluation, evaluation, evaluations, cancel_evaluation and the runner's callbacks."""

    def _target_spec(self, project: Any, token: str) -> Any:
        """What the runner needs to reach the endpoint under the portal's egress policy: the allow-list, and the
        address the passed qualification used (pinned: a DNS answer that changed since is not followed).
        ``project``: the row `_qualified_project` read together with that qualification (its pinned_ip in
        ``qualified_pinned_ip``), so the runner gets exactly the server information that was checked."""
        from sampan.web.portal.runner import TargetSpec

        pinned = getattr(project, "qualified_pinned_ip", None)
        return TargetSpec(url=project.endpoint_url, token=token, tls_cert_pem=project.tls_cert_pem or None,
                          allow=tuple(getattr(self.egress, "allow", ()) or ()), pinned_ip=pinned or None,
                          local_platform=self.local_platforms.get(project.endpoint_url))

    def start_evaluation(self, p: PortalPrincipal, project_id: int, profile: str = "quick") -> int:
        """Queue an evaluation and hand it to the runner. Refused unless the questionnaire is saved, the last
        qualification passed and no other evaluation of the project is queued or running; counted against the
        applicant's daily evaluation limit (RateLimited, audited, once it is used up)."""
        from sampan.verify.catalogue.base import PROFILES

        row = self.own_project_row(p, project_id, "start an evaluation")
        if profile not in PROFILES:
            raise Invalid(f"profile must be one of {', '.join(PROFILES)}", "profile")
        if self.runner is None:
            raise Conflict("this portal runs no evaluations (no runner configured)", "runner")
        try:
            with self.engine.begin() as c:
                questionnaire = c.execute(select(t.questionnaires.c.claims)
                                          .where(t.questionnaires.c.project_id == row.id)).first()
                if questionnaire is None:
                    raise Conflict("fill in the technical questionnaire first", "questionnaire")
                row = self._qualified_project(c, int(row.id))
                self._refuse_if_busy(c, int(row.id))
                reserve(c, self.limits.for_evaluation(p.user_id, p.role == "applicant"), self.clock())
                eid = _new_id(c.execute(insert(t.evaluations).values(
                    project_id=row.id, profile=profile, status="queued", progress=_empty_progress(),
                    claims=dict(questionnaire.claims),
                    started_by=p.actor, started_at=self.clock())))
        except IntegrityError:  # a parallel start won the race: the partial unique index refused this one
            with self.engine.connect() as c:
                self._refuse_if_busy(c, int(row.id))
            raise Conflict("another evaluation of this project started at the same moment", "project_id") from None
        except RateLimited as exc:
            self.audit_refusal(p, exc, "evaluation", {"project_id": int(row.id), "profile": profile})
            raise
        self.audit(p, "evaluation_started", {"project_id": int(row.id), "evaluation_id": eid, "profile": profile})
        token = self.bench_token(row)

        def on_progress(progress: dict[str, Any]) -> None:
            self._progress(eid, scrub(progress, token))

        def on_done(status: str, results_dir: Path | None, error: str | None) -> None:
            self._done(eid, status, results_dir, scrub(error, token) if error else None)

        try:
            self.runner.start(eid, self._target_spec(row, token), profile, on_progress, on_done)
        except Exception as exc:  # a runner that cannot take the job: the row must not stay queued
            self._done(eid, "failed", None, scrub(f"the runner refused the job: {type(exc).__name__}: {exc}", token))
            raise Conflict("the evaluation could not be started; see its error", "runner") from None
        return eid

    def _qualified_project(self, c: Connection, project_id: int) -> Any:
        """The project row and its latest qualification, read in ONE statement (one snapshot), or Conflict unless
        that qualification passed for exactly this server information (R17-PORTAL-1: a change made while a check
        ran, or after it, must not be evaluated unchecked). The row is what the runner is then given."""
        latest = (select(t.qualifications.c.id).where(t.qualifications.c.project_id == project_id)
                  .order_by(t.qualifications.c.id.desc()).limit(1).scalar_subquery())
        row = c.execute(select(t.projects, t.qualifications.c.status,
                               t.qualifications.c.server_fingerprint,
                               t.qualifications.c.pinned_ip.label("qualified_pinned_ip"))
                        .select_from(t.projects.outerjoin(t.qualifications, t.qualifications.c.id == latest))
                        .where(t.projects.c.id == project_id)).first()
        if row is None or row.status is None:
            raise Conflict("the endpoint must pass the qualification check first", "qualification")
        if not self.qualifies(row, row):
            changed = row.status == "passed"
            raise Conflict("the server information changed after the last qualification check: run it again"
                           if changed else "the endpoint must pass the qualification check first", "qualification")
        return row

    @staticmethod
    def _refuse_if_busy(c: Connection, project_id: int) -> None:
        busy = c.execute(select(t.evaluations.c.id).where(t.evaluations.c.project_id == project_id,
                                                          t.evaluations.c.status.in_(ACTIVE))).first()
        if busy is not None:
            raise Conflict(f"evaluation {busy.id} of this project is still running", "project_id")

    def _progress(self, eid: int, progress: Any) -> None:
        with self.engine.begin() as c:
            c.execute(update(t.evaluations).where(t.evaluations.c.id == eid, t.evaluations.c.status.in_(ACTIVE))
                      .values(status="running", progress=_clean_progress(progress)))

    def _done(self, eid: int, status: str, results_dir: Path | None, error: str | None) -> None:
        status = status if status in _ENDED else "failed"
        results = Path(results_dir) / "results.json" if results_dir is not None else None
        counts: dict[str, int] | None = None
        if status == "finished":
            try:
                counts = load_evaluation(results).counts() if results is not None else None
            except ConfigError as exc:
                status, error = "failed", f"the runner's results are unreadable: {exc}"
            if counts is None and status == "finished":
                status, error = "failed", "the runner finished without writing results.json"
        with self.engine.begin() as c:
            done = c.execute(update(t.evaluations).where(t.evaluations.c.id == eid,
                                                         t.evaluations.c.status.in_(ACTIVE))
                             .values(status=status, error=(error or None) and str(error)[:4000],
                                     results_path=str(results) if status == "finished" else None,
                                     finished_at=self.clock()))
        if done.rowcount == 1:
            self.audit(None, "evaluation_ended", {"evaluation_id": eid, "status": status,
                                                  **({"counts": counts} if counts else {}),
                                                  **({"error": str(error)[:500]} if error else {})})

    def fail_interrupted(self) -> int:
        """Mark evaluations left queued or running by a previous portal process as failed (call once at start-up,
        before this process's runner takes jobs: their runner is gone, and a project with one "running" would
        never be evaluated again). Returns how many."""
        with self.engine.begin() as c:
            rows = c.execute(select(t.evaluations.c.id).where(t.evaluations.c.status.in_(ACTIVE))).all()
        for r in rows:
            self._done(int(r.id), "failed", None, "the portal stopped while this evaluation ran: start it again")
        return len(rows)

    def cancel_evaluation(self, p: PortalPrincipal, evaluation_id: int) -> None:
        """Stop a queued or running evaluation (its owner or an admin)."""
        row, project = self.evaluation_row(p, evaluation_id)
        self.own_project_row(p, int(project.id), "cancel an evaluation")
        if row.status not in ACTIVE:
            raise Conflict(f"evaluation {evaluation_id} is {row.status}, not running", "evaluation_id")
        if self.runner is not None:
            self.runner.cancel(int(row.id))
        with self.engine.begin() as c:
            c.execute(update(t.evaluations).where(t.evaluations.c.id == row.id, t.evaluations.c.status.in_(ACTIVE))
                      .values(status="cancelled", finished_at=self.clock(), error="cancelled by " + p.actor))
        self.audit(p, "evaluation_cancelled", {"evaluation_id": int(row.id)})

    def evaluations(self, p: PortalPrincipal, project_id: int) -> list[dict[str, Any]]:
        """The project's evaluations, newest first (status and progress only)."""
        project = self.project_row(p, project_id)
        with self.engine.connect() as c:
            rows = c.execute(select(t.evaluations).where(t.evaluations.c.project_id == project.id)
                             .order_by(t.evaluations.c.id.desc())).all()
        return [self._basic(r, project) for r in rows]

    @staticmethod
    def _basic(row: Any, project: Any) -> dict[str, Any]:
        return {"id": int(row.id), "project_id": int(project.id), "project_name": project.name,
                "profile": row.profile, "status": row.status, "progress": dict(row.progress or {}),
                "error": row.error, "started_at": iso(row.started_at), "finished_at": iso(row.finished_at)}

    def results_of(self, row: Any) -> Evaluation:
        """The finished evaluation's results (Conflict while it has none)."""
        if row.status != "finished" or not row.results_path:
            raise Conflict(f"evaluation {row.id} is {row.status}: no results yet", "evaluation_id")
        try:
            return load_evaluation(row.results_path)
        except ConfigError as exc:
            raise Conflict(f"evaluation {row.id}'s results cannot be read: {exc}", "evaluation_id") from None

    def claims_of(self, row: Any) -> dict[str, bool]:
        """The claims the evaluation is judged against: those saved when it started (a questionnaire edited after
        the results cannot turn a contradicted claim into an absent one)."""
        claims = row.claims
        if claims is None:
            with self.engine.connect() as c:
                claims = c.execute(select(t.questionnaires.c.claims)
                                   .where(t.questionnaires.c.project_id == row.project_id)).scalar()
        return {str(k): bool(v) for k, v in dict(claims or {}).items()}

    def evaluation(self, p: PortalPrincipal, evaluation_id: int) -> dict[str, Any]:
        """Status and progress; once finished, the online summary: counts, overall, each test's verdict and
        message, and the questionnaire's claims against the measured verdicts."""
        row, project = self.evaluation_row(p, evaluation_id)
        out = self._basic(row, project)
        out.update(counts=None, overall=None, outcomes=[], claims=[], claims_summary={}, target=None)
        if row.status == "finished" and row.results_path:
            try:
                ev = self.results_of(row)
            except Conflict as exc:
                out["error"] = exc.message
            else:
                from sampan.verify.report import overall

                checks = [c.to_dict() for c in compare_claims(self.claims_of(row), ev)]
                summary: dict[str, int] = {}
                for check in checks:
                    summary[check["status"]] = summary.get(check["status"], 0) + 1
                out.update(counts=ev.counts(), overall=overall(ev), claims=checks, claims_summary=summary,
                           target={"platform": ev.target.platform, "platform_version": ev.target.platform_version,
                                   "api_version": ev.target.api_version},
                           outcomes=[{"test_id": o.id, "title": o.title, "category": o.category,
                                      "verdict": o.verdict, "message": o.message} for o in ev.outcomes])
        out["release"] = self.release_state(p, row, project)
        return out

    def release_state(self, p: PortalPrincipal, row: Any, project: Any) -> dict[str, Any]:
        """The latest full-report request of the evaluation and whether this principal may download it now."""
        with self.engine.connect() as c:
            req = c.execute(select(t.release_requests).where(t.release_requests.c.evaluation_id == row.id)
                            .order_by(t.release_requests.c.id.desc()).limit(1)).first()
            granted = c.execute(select(t.release_requests.c.id).where(
                t.release_requests.c.evaluation_id == row.id, t.release_requests.c.status == "granted")).first()
        full = row.status == "finished" and (self.is_staff(p) or granted is not None)
        return {"request_id": int(req.id) if req is not None else None,
                "status": req.status if req is not None else None, "full_available": full}
