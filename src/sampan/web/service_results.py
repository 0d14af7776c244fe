"""Runs (live view, comparison, reports and receipts), the model registry with stages and lineage, the audit log.

Lineage of a model: the run that made it, the job of that run, the spec hash every party approved, and the
approvals themselves (signed by the parties); the stage history (candidate -> approved -> retired) is kept in
the control plane's table and every change is audited. Export is the existing `sampan-model` JSON document.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, update

from sampan.errors import SampanError
from sampan.web import db
from sampan.web.errors import Conflict, Invalid, NotFound
from sampan.web.roles import ADMIN, ANALYST, AUDITOR, Principal, require
from sampan.web.service_base import AUDIT_CHAIN, PlaneBase, row_dict
from sampan.web.service_data import DataService

__all__ = ["ResultsService"]

_COORDINATOR_SIDE = frozenset({ADMIN, ANALYST, AUDITOR})  # who reads a checks run's per-bank report
_TRANSITIONS = {"candidate": ("approved", "retired"), "approved": ("retired",), "retired": ()}
_FINAL = {"completed": "finished",  # the runner's word for a finished run (the FakeGateway writes "finished")
          "finished": "finished", "failed": "failed", "cancelled": "cancelled", "interrupted": "failed"}


class ResultsService(DataService, PlaneBase):
    def _run_row(self, principal: Principal, run_id: str) -> Any:
        """A run the control plane started, if the principal may see its consortium (else 404)."""
        with self.engine.connect() as c:
            row = c.execute(select(db.runs, db.jobs.c.consortium_id, db.jobs.c.status.label("job_status"))
                            .join(db.jobs, db.jobs.c.id == db.runs.c.job_id).where(db.runs.c.run_id == run_id)).first()
        if row is None:
            raise NotFound(f"no run {run_id!r} of the control plane", "run_id")
        self.visible_consortium(principal, row.consortium_id)
        return row

    def runs(self, principal: Principal, consortium_id: int | None = None) -> list[dict[str, Any]]:
        require(principal, "run.read")
        query = select(db.runs, db.jobs.c.consortium_id, db.jobs.c.name, db.jobs.c.status).join(
            db.jobs, db.jobs.c.id == db.runs.c.job_id).order_by(db.runs.c.id.desc())
        if consortium_id is not None:
            self.visible_consortium(principal, consortium_id)
            query = query.where(db.jobs.c.consortium_id == consortium_id)
        with self.engine.connect() as c:
            rows = list(c.execute(query))
        out = []
        for r in rows:
            try:
                self.visible_consortium(principal, r.consortium_id)
            except NotFound:
                continue
            out.append(row_dict(r))
        return out

    def run_view(self, principal: Principal, run_id: str) -> dict[str, Any]:
        """The live view of a run (and the job's status follows the run's end)."""
        require(principal, "run.read")
        row = self._run_row(principal, run_id)
        try:
            view = self.gateway.run_view(run_id)
        except SampanError as exc:
            raise NotFound(f"run {run_id!r} cannot be read: {exc}", "run_id") from None
        data = dataclasses.asdict(view)
        final = _FINAL.get(str(data.get("status")))
        if final and row.job_status == "running":
            with self.engine.begin() as c:
                c.execute(update(db.jobs).where(db.jobs.c.id == row.job_id, db.jobs.c.status == "running")
                          .values(status=final, updated_at=self.clock()))
            self.audit(None, "job_" + final, {"job_id": row.job_id, "run_id": run_id})
            for party in data.get("parties") or []:
                self.refresh_budgets(party)
        return {**data, "job_id": row.job_id, "spec_hash": row.spec_hash}

    def compare(self, principal: Principal, run_ids: Sequence[str]) -> dict[str, Any]:
        require(principal, "run.read")
        if not 2 <= len(run_ids) <= 4:
            raise Invalid("compare 2 to 4 runs", "ids")
        for rid in run_ids:
            self._run_row(principal, rid)
        from sampan.web.run_view import compare_runs

        try:
            return dataclasses.asdict(compare_runs(self.store, list(run_ids)))
        except SampanError as exc:
            raise NotFound(str(exc), "ids") from None

    def report_files(self, principal: Principal, run_id: str) -> dict[str, str | None]:
        """The HTML report's and privacy receipt's paths the store records for the run (None: not written)."""
        require(principal, "report.read")
        row = self._run_row(principal, run_id)
        view = self.gateway.run_view(run_id)
        if principal.role not in _COORDINATOR_SIDE and self._workflow(row.job_id) == "checks":
            # R14-CHECKS-5: a checks run's report holds per-bank statistics (each bank's rows and positives, its
            # drift, a partner's overlap): coordinator-side roles only, never a party's operator (the receipt,
            # which says what was revealed and to whom, stays readable)
            return {"run_id": run_id, "report_path": None, "receipt_path": view.receipt_path,
                    "report_withheld": "a checks run's report holds per-party statistics: it is for the "
                                       "consortium's admins, analysts and auditors only"}
        return {"run_id": run_id, "report_path": view.report_path, "receipt_path": view.receipt_path}

    def _workflow(self, job_id: int) -> str:
        with self.engine.connect() as c:
            config = c.execute(select(db.jobs.c.config).where(db.jobs.c.id == job_id)).scalar()
        return str(((config or {}).get("run") or {}).get("workflow") or "horizontal")

    # --- model registry --------------------------------------------------------------------------------
    def _stage(self, name: str, version: int) -> tuple[str, list[dict[str, Any]]]:
        with self.engine.connect() as c:
            history = [row_dict(r) for r in c.execute(select(db.model_stages).where(
                db.model_stages.c.model_name == name, db.model_stages.c.version == version)
                .order_by(db.model_stages.c.id))]
        return (history[-1]["stage"] if history else "candidate"), history

    def _model_visible(self, principal: Principal, run_id: str | None) -> bool:
        """Models follow their run -> job -> consortium (R14-WEB-2): an operator sees only models of runs in its
        organisation's consortia; a model the control plane did not start is not an operator's business."""
        with self.engine.connect() as c:
            row = c.execute(select(db.jobs.c.consortium_id).join(db.runs, db.runs.c.job_id == db.jobs.c.id)
                            .where(db.runs.c.run_id == run_id)).first()
        if row is None:
            return principal.role != "party_operator"
        try:
            self.visible_consortium(principal, row.consortium_id)
        except NotFound:
            return False
        return True

    def models(self, principal: Principal) -> list[dict[str, Any]]:
        require(principal, "model.read")
        out = []
        for m in self.store.list_models():
            if not self._model_visible(principal, m.run_id):
                continue
            stage, _ = self._stage(m.name, m.version)
            out.append({"name": m.name, "version": m.version, "run_id": m.run_id, "stage": stage,
                        "created_at": m.created_at.isoformat() if m.created_at else None,
                        "has_receipt": m.has_receipt})
        return out

    def _registered(self, name: str, version: int, principal: Principal) -> Any:
        """The registered model, if the principal may see it (else 404, as if absent)."""
        try:
            m = self.store.get_model(name, version)
        except SampanError:
            raise NotFound(f"no model {name!r} version {version}", "version") from None
        if not self._model_visible(principal, m.run_id):
            raise NotFound(f"no model {name!r} version {version}", "version")
        return m

    def model(self, principal: Principal, name: str, version: int) -> dict[str, Any]:
        """A model with its stage history and lineage (run, job, approved spec hash, the parties' approvals)."""
        require(principal, "model.read")
        m = self._registered(name, version, principal)
        stage, history = self._stage(name, version)
        with self.engine.connect() as c:
            run = c.execute(select(db.runs).where(db.runs.c.run_id == m.run_id)).first()
            approvals = [] if run is None else [row_dict(a) for a in c.execute(select(db.approvals).where(
                db.approvals.c.job_id == run.job_id, db.approvals.c.spec_hash == run.spec_hash))]
        lineage = {**m.lineage, "job_id": run.job_id if run else None, "spec_hash": run.spec_hash if run else None,
                   "approvals": [{"party": a["party"], "decided_by": a["decided_by"], "decided_at": a["decided_at"],
                                  "signature": (a["approval"] or {}).get("signature")} for a in approvals]}
        return {"name": name, "version": version, "run_id": m.run_id, "stage": stage, "stage_history": history,
                "lineage": lineage, "kind": (m.meta.get("model") or {}).get("kind"),
                "has_receipt": m.receipt is not None}

    def set_stage(self, principal: Principal, name: str, version: int, stage: str, note: str = "") -> dict[str, Any]:
        require(principal, "model.stage")
        self._registered(name, version, principal)
        current, _ = self._stage(name, version)
        if stage not in _TRANSITIONS:
            raise Invalid(f"stage must be one of {', '.join(_TRANSITIONS)}", "stage")
        if stage not in _TRANSITIONS[current]:
            raise Conflict(f"model {name!r} v{version} is {current}: it cannot become {stage}", "stage")
        with self.engine.begin() as c:
            c.execute(insert(db.model_stages).values(model_name=name, version=version, stage=stage,
                                                     changed_by=principal.actor, note=note[:2000],
                                                     changed_at=self.clock()))
        self.audit(principal, "model_stage", {"name": name, "version": version, "from": current, "to": stage})
        return self.model(principal, name, version)

    def export_model(self, principal: Principal, name: str, version: int) -> dict[str, Any]:
        """The `sampan-model` JSON document of a registered horizontal model."""
        from sampan.models.export import export_document

        require(principal, "model.export")
        m = self._registered(name, version, principal)
        try:
            document = export_document(m.arrays, m.meta, name=name, version=version, run_id=m.run_id)
        except (SampanError, KeyError, ValueError, TypeError) as exc:
            raise Conflict(f"model {name!r} v{version} cannot be exported: {exc}", "name") from None
        self.audit(principal, "model_exported", {"name": name, "version": version})
        return document

    # --- audit log -------------------------------------------------------------------------------------
    def audit_log(self, principal: Principal, limit: int = 200, actor: str | None = None) -> dict[str, Any]:
        """The control plane's audit entries (newest last) and the chain's verification result."""
        require(principal, "audit.read")
        rows = self.store.events(AUDIT_CHAIN)
        entries: list[dict[str, Any]] = [{"seq": r.seq, "at": r.at.isoformat() if r.at else None, "kind": r.kind,
                                          "detail": r.detail, "hash": r.hash} for r in rows]
        if actor:
            entries = [e for e in entries if (e["detail"] or {}).get("actor") == actor]
        return {"entries": entries[-max(1, min(limit, 5000)):], "total": len(entries),
                "verification": self.verify_audit(principal)}

    def verify_audit(self, principal: Principal, run_id: str | None = None) -> dict[str, Any]:
        require(principal, "audit.read")
        report = self.store.verify_audit(run_id or AUDIT_CHAIN)
        return {"ok": report.ok, "entries": report.entries, "signed": report.signed,
                "problems": [str(p) for p in report.problems]}
