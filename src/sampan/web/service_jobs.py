"""Jobs, per-party approvals bound to the job's spec hash, the approval inbox, start and cancel
(standing rules: `sampan.web.service_rules`).

The consent rules the control plane enforces (each party's agent enforces them again, authoritatively):
- a job's spec is `sampan.deploy.consent.job_spec(...)` of its full run config; its hash is what parties sign;
- editing a job recomputes the spec; when the hash changes, every approval of the job is voided (deleted, and
  the voiding audited), so an approval never outlives the exact job it covers; the job then takes a fresh run
  id (the spec's job id: each agent reserves once per job id) and the agents that approved the old spec are
  asked to release it (R14-WEB-4);
- cancelling a job that has not started, or an operator refusing after approving, asks the agents to withdraw
  their approvals and give their reservations back (`sampan.web.service_release`, R14-WEB-3);
- an operator decides only for its own organisation (sampan.web.roles), and only for a party the job reads;
- a job whose planned spend exceeds a party's remaining lifetime budget (the mirror) cannot be approved; an
  OPEN-ENDED DP job (DP on, no stated epsilon) is counted as spending everything the dataset has left: the
  inbox says so and it cannot be approved once nothing is left (R14-WEB-13);
- an approval is recorded only against the spec hash it was signed for, re-read in the recording transaction:
  an edit that lands while the party's agent signs makes the decision a 409 (R14-WEB-10);
- a job starts only when every party it reads from approved its CURRENT spec hash; the agents then verify
  every approval's signature themselves before serving anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, insert, select, update

from sampan.errors import SampanError
from sampan.runtime.store import new_run_id
from sampan.web import db
from sampan.web.errors import Conflict, Invalid
from sampan.web.roles import Principal, require
from sampan.web.service_base import PlaneBase, row_dict
from sampan.web.service_data import DataService
from sampan.web.service_release import ReleaseCalls
from sampan.web.service_rules import RulesService

__all__ = ["JobsService"]

_EDITABLE = ("draft", "awaiting_approval", "approved", "refused")
_DECIDABLE = ("awaiting_approval", "approved", "refused")
_EPS_SLACK = 1e-12


MAX_ROUNDS = 10_000


def _check_numbers(config: Mapping[str, Any]) -> None:
    """The numbers the consent rests on, checked here with a clear field error (the agents check them again):
    a bounded config (R14-WEB-12), a positive finite epsilon, a delta in [0, 1), 1..MAX_ROUNDS rounds."""
    import math

    from sampan.web.schemas import bounded_config

    try:
        bounded_config(dict(config))
    except ValueError as exc:
        raise Invalid(str(exc), "config") from None
    privacy: Mapping[str, Any] = config["privacy"] if isinstance(config.get("privacy"), Mapping) else {}
    eps, delta = privacy.get("epsilon"), privacy.get("delta")
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, int | float) or not math.isfinite(eps)
                            or eps <= 0):
        raise Invalid(f"privacy.epsilon must be a positive number, not {eps!r}", "config.privacy.epsilon")
    if delta is not None and (isinstance(delta, bool) or not isinstance(delta, int | float)
                              or not 0 <= delta < 1):
        raise Invalid(f"privacy.delta must be a number in [0, 1), not {delta!r}", "config.privacy.delta")
    run: Mapping[str, Any] = config["run"] if isinstance(config.get("run"), Mapping) else {}
    rounds = run.get("rounds")
    if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, int)
                               or not 1 <= rounds <= MAX_ROUNDS):
        raise Invalid(f"run.rounds must be a whole number from 1 to {MAX_ROUNDS}, not {rounds!r}",
                      "config.run.rounds")


class JobsService(RulesService, DataService, ReleaseCalls, PlaneBase):
    # --- jobs ----------------------------------------------------------------------------------------
    def _spec(self, consortium_id: int, config: Mapping[str, Any], datasets: Mapping[str, Any],
              label_holder: str | None, operator: str, run_id: str) -> tuple[Any, dict[str, Any]]:
        """The job spec, from the registered datasets' schemas (columns default to all the dataset's columns)."""
        from sampan.deploy.consent.spec import job_spec

        if not datasets:
            raise Invalid("a job reads at least one party's dataset", "datasets")
        _check_numbers(config)
        members = set(self.member_organisations(consortium_id))
        bound: dict[str, dict[str, Any]] = {}
        for party, choice in datasets.items():
            where = f"datasets.{party}"
            if party not in members:
                raise Invalid(f"{party!r} is not a member of this consortium", where)
            name = choice if isinstance(choice, str) else (choice or {}).get("dataset")
            with self.engine.connect() as c:
                row = c.execute(select(db.datasets).where(db.datasets.c.consortium_id == consortium_id,
                                                          db.datasets.c.party == party,
                                                          db.datasets.c.name == name)).first()
            if row is None:
                raise Invalid(f"{party!r} has registered no dataset {name!r} in this consortium", where)
            known = list((row.schema or {}).get("columns") or {})
            asked = None if isinstance(choice, str) else (choice or {}).get("columns")
            columns = known if asked is None else [str(x) for x in asked]
            unknown = [x for x in columns if x not in known]
            if unknown:
                raise Invalid(f"dataset {name!r} of {party!r} has no columns {unknown}", f"{where}.columns")
            bound[party] = {"dataset": str(name), "columns": columns}
        if label_holder is not None and label_holder not in bound:
            raise Invalid(f"the label holder {label_holder!r} is not one of the job's parties", "label_holder")
        try:
            spec = job_spec(dict(config), parties=list(bound), datasets=bound, label_holder=label_holder,
                            operator=operator, job_id=run_id)
        except SampanError as exc:
            raise Invalid(f"the run config cannot be approved: {exc}", "config") from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise Invalid(f"the run config is not usable ({type(exc).__name__}: {exc})", "config") from None
        return spec, {"datasets": bound, "label_holder": label_holder, "run_id": run_id}

    def create_job(self, principal: Principal, consortium_id: int, name: str, config: Mapping[str, Any],
                   datasets: Mapping[str, Any], label_holder: str | None = None, submit: bool = True) -> dict[str, Any]:
        """A job for any workflow from its run config; `submit` sends it to the parties' inboxes at once."""
        require(principal, "job.create")
        self.visible_consortium(principal, consortium_id)
        if not name.strip() or len(name) > 200:
            raise Invalid("a job needs a name of 1-200 characters", "name")
        run_id = new_run_id()
        spec, bindings = self._spec(consortium_id, config, datasets, label_holder, principal.actor, run_id)
        with self.engine.begin() as c:
            jid = db.new_id(c.execute(insert(db.jobs).values(
                consortium_id=consortium_id, name=name.strip(), config=dict(config), bindings=bindings,
                spec=spec.model_dump(mode="json"), spec_hash=spec.spec_hash(),
                status="awaiting_approval" if submit else "draft", created_by=principal.actor,
                created_at=self.clock(), updated_at=self.clock())))
        self.audit(principal, "job_created", {"job_id": jid, "consortium_id": consortium_id,
                                              "spec_hash": spec.spec_hash(), "run_id": run_id})
        return self.job(principal, jid)

    def _job_row(self, principal: Principal, job_id: int) -> Any:
        row = self._one(db.jobs, db.jobs.c.id == job_id, f"job {job_id}", "job_id")
        self.visible_consortium(principal, row.consortium_id)
        return row

    def _decisions(self, job_id: int, spec_hash: str) -> list[Any]:
        with self.engine.connect() as c:
            return list(c.execute(select(db.approvals).where(db.approvals.c.job_id == job_id,
                                                             db.approvals.c.spec_hash == spec_hash)
                                  .order_by(db.approvals.c.id)))

    def job(self, principal: Principal, job_id: int) -> dict[str, Any]:
        require(principal, "job.read")
        row = self._job_row(principal, job_id)
        decisions = {d.party: d for d in self._decisions(row.id, row.spec_hash)}
        with self.engine.connect() as c:
            run = c.execute(select(db.runs.c.run_id).where(db.runs.c.job_id == row.id)
                            .order_by(db.runs.c.id.desc())).first()
        parties = list(row.spec.get("parties") or [])
        return {**row_dict(row), "parties": parties, "run_id": run.run_id if run else None,
                "approvals": {p: ("approved" if decisions[p].approved else "refused") if p in decisions
                              else "pending" for p in parties},
                "refusals": {p: d.reason for p, d in decisions.items() if not d.approved}}

    def jobs(self, principal: Principal, consortium_id: int) -> list[dict[str, Any]]:
        require(principal, "job.read")
        self.visible_consortium(principal, consortium_id)
        with self.engine.connect() as c:
            ids = [int(r.id) for r in c.execute(select(db.jobs.c.id).where(db.jobs.c.consortium_id == consortium_id)
                                                .order_by(db.jobs.c.id))]
        return [self.job(principal, i) for i in ids]

    def edit_job(self, principal: Principal, job_id: int, *, name: str | None = None,
                 config: Mapping[str, Any] | None = None, datasets: Mapping[str, Any] | None = None,
                 label_holder: str | None = None) -> dict[str, Any]:
        """Change a job not yet started; a changed spec voids every approval it had."""
        require(principal, "job.edit")
        row = self._job_row(principal, job_id)
        if row.status not in _EDITABLE:
            raise Conflict(f"job {job_id} is {row.status}: only a job not yet started can be edited", "job_id")
        bindings = dict(row.bindings)
        spec, new_bindings = self._spec(
            row.consortium_id, config if config is not None else row.config,
            datasets if datasets is not None else bindings["datasets"],
            label_holder if label_holder is not None else bindings.get("label_holder"),
            principal.actor, str(bindings["run_id"]))
        changed = spec.spec_hash() != row.spec_hash
        withdrawn = [d.party for d in self._decisions(row.id, row.spec_hash) if d.approved] if changed else []
        if changed:  # a new spec is a new job at the agents: a fresh run id, so no agent's old reservation sticks
            spec, new_bindings = self._spec(row.consortium_id, row.config if config is None else config,
                                            new_bindings["datasets"], new_bindings["label_holder"], principal.actor,
                                            new_run_id())
        with self.engine.begin() as c:
            voided = c.execute(delete(db.approvals).where(db.approvals.c.job_id == job_id)).rowcount if changed else 0
            c.execute(update(db.jobs).where(db.jobs.c.id == job_id).values(
                name=(name or row.name).strip(), config=dict(config if config is not None else row.config),
                bindings=new_bindings, spec=spec.model_dump(mode="json"), spec_hash=spec.spec_hash(),
                status="awaiting_approval" if changed else row.status, updated_at=self.clock()))
        self.audit(principal, "job_edited", {"job_id": job_id, "old_spec_hash": row.spec_hash,
                                             "spec_hash": spec.spec_hash(), "approvals_voided": voided,
                                             "run_id": new_bindings["run_id"]})
        self.release_reservations(principal, job_id, str(bindings["run_id"]), withdrawn, "edited")
        return self.job(principal, job_id)

    def submit_job(self, principal: Principal, job_id: int) -> dict[str, Any]:
        """A draft goes to the parties' inboxes."""
        require(principal, "job.edit")
        row = self._job_row(principal, job_id)
        if row.status != "draft":
            raise Conflict(f"job {job_id} is {row.status}, not a draft", "job_id")
        with self.engine.begin() as c:
            c.execute(update(db.jobs).where(db.jobs.c.id == job_id).values(status="awaiting_approval",
                                                                          updated_at=self.clock()))
        self.audit(principal, "job_submitted", {"job_id": job_id, "spec_hash": row.spec_hash})
        return self.job(principal, job_id)

    # --- the approval inbox and decisions --------------------------------------------------------------
    def inbox(self, principal: Principal, party: str) -> list[dict[str, Any]]:
        """Jobs waiting for `party`: exactly what each reads and spends there, and the budget left after it."""
        from sampan.deploy.consent.spec import JobSpec

        require(principal, "inbox.read", party)
        with self.engine.connect() as c:
            rows = list(c.execute(select(db.jobs).where(db.jobs.c.status.in_(_DECIDABLE)).order_by(db.jobs.c.id)))
        out = []
        for row in rows:
            spec = row.spec
            if party not in (spec.get("parties") or []):
                continue
            decided = {d.party: d for d in self._decisions(row.id, row.spec_hash)}
            mine = spec["data"][party]
            budget = self.budget(party, mine["dataset"])
            privacy = spec.get("privacy") or {}
            planned_pair = JobSpec.model_validate(spec).planned()
            open_ended = planned_pair is None  # DP without a stated epsilon: may spend all that is left
            remaining = budget["remaining_epsilon"] if budget else None
            planned = remaining if open_ended else planned_pair[0] if planned_pair else None
            out.append({
                "job_id": row.id, "name": row.name, "consortium_id": row.consortium_id, "status": row.status,
                "spec_hash": row.spec_hash, "workflow": spec.get("workflow"), "code_version": spec.get("code_version"),
                "dataset": mine["dataset"], "columns": list(mine["columns"]), "model": spec.get("model"),
                "rounds": spec.get("rounds"), "privacy": privacy, "protections": list(spec.get("protections") or []),
                "partners": [p for p in spec["parties"] if p != party], "label_holder": spec.get("label_holder"),
                "decision": ("approved" if decided[party].approved else "refused") if party in decided else "pending",
                "remaining_epsilon": remaining, "open_ended": open_ended,
                "remaining_after_epsilon": None if remaining is None or planned is None else remaining - planned,
                "created_by": row.created_by})
        return out

    def decide(self, principal: Principal, job_id: int, party: str, approve: bool,
               reason: str = "") -> dict[str, Any]:
        """The operator's decision for its party: approval goes to the party's agent, which signs (or refuses)."""
        from sampan.deploy.consent.approval import ConsentRefused
        from sampan.deploy.consent.spec import JobSpec

        require(principal, "approval.decide", party)
        row = self._job_row(principal, job_id)
        if party not in (row.spec.get("parties") or []):
            raise Invalid(f"job {job_id} reads no data of {party!r}", "party")
        if row.status not in _DECIDABLE:
            raise Conflict(f"job {job_id} is {row.status}: it can no longer be decided", "job_id")
        spec = JobSpec.model_validate(row.spec)
        approval_json: dict[str, Any] | None = None
        if approve:
            self.refresh_budgets(party)
            self._check_budget(spec, party)
            try:
                approval = self.gateway.request_approval(party, spec, principal.actor)
            except ConsentRefused as exc:
                self._record(principal, row, party, False, f"refused by the party's agent: {exc.reason}", None)
                raise Conflict(f"the agent of party {party!r} refused: {exc.reason}", "party") from None
            if approval.spec_hash != row.spec_hash or approval.party != party:
                raise Conflict(f"the agent of party {party!r} answered an approval of another job or party", "party")
            approval_json = approval.model_dump(mode="json")
            self.refresh_budgets(party)
        elif not reason.strip():
            raise Invalid("a refusal needs a reason", "reason")
        withdrawn = not approve and any(d.party == party and d.approved for d in self._decisions(row.id, row.spec_hash))
        try:
            self._record(principal, row, party, approve, None if approve else reason.strip()[:2000], approval_json)
        except Conflict:  # edited while the agent signed: its approval of the old spec must not hold budget
            if approval_json is not None:
                self.release_reservations(principal, job_id, spec.job_id, [party], "changed while deciding")
            raise
        if withdrawn:  # the agent's signed approval and its reservation go too
            self.release_reservations(principal, job_id, spec.job_id, [party], "refused after approving")
        return self.job(principal, job_id)

    def _check_budget(self, spec: Any, party: str) -> None:
        planned = spec.planned()
        budget = self.budget(party, spec.data[party].dataset)
        if budget is None or budget["remaining_epsilon"] is None:
            return
        if planned is None:  # open-ended DP: it may spend all that is left, so something must be left
            if budget["remaining_epsilon"] <= _EPS_SLACK:
                raise Conflict(f"an open-ended DP job may spend all that is left of dataset "
                               f"{spec.data[party].dataset!r} of party {party!r}, and nothing is left", "budget")
            return
        eps, delta = planned
        if eps > budget["remaining_epsilon"] + _EPS_SLACK or (
                budget["remaining_delta"] is not None and delta > budget["remaining_delta"] + _EPS_SLACK):
            raise Conflict(f"job needs epsilon {eps:g}, delta {delta:g} of dataset {spec.data[party].dataset!r} of "
                           f"party {party!r}, which has only epsilon {budget['remaining_epsilon']:g}, "
                           f"delta {budget['remaining_delta']} left", "budget")

    def _record(self, principal: Principal, row: Any, party: str, approved: bool, reason: str | None,
                approval: dict[str, Any] | None) -> None:
        with self.engine.begin() as c:
            now = c.execute(select(db.jobs.c.spec_hash, db.jobs.c.status).where(db.jobs.c.id == row.id)
                            .with_for_update()).first()
            if now is None or now.spec_hash != row.spec_hash or now.status not in _DECIDABLE:
                raise Conflict(f"job {row.id} changed while {party!r} was deciding: decide its current spec",
                               "spec_hash")
            c.execute(delete(db.approvals).where(db.approvals.c.job_id == row.id, db.approvals.c.party == party))
            c.execute(insert(db.approvals).values(job_id=row.id, party=party, spec_hash=row.spec_hash,
                                                  approved=approved, approval=approval, reason=reason,
                                                  decided_by=principal.actor, decided_at=self.clock()))
            decided = {d.party: d.approved for d in c.execute(select(db.approvals).where(
                db.approvals.c.job_id == row.id, db.approvals.c.spec_hash == row.spec_hash))}
            parties = list(row.spec.get("parties") or [])
            status = "refused" if not all(decided.values()) else (
                "approved" if all(decided.get(p) for p in parties) else "awaiting_approval")
            c.execute(update(db.jobs).where(db.jobs.c.id == row.id).values(status=status, updated_at=self.clock()))
        self.audit(principal, "approval_recorded" if approved else "approval_refused", {
            "job_id": row.id, "party": party, "spec_hash": row.spec_hash, "reason": reason,
            "signature": (approval or {}).get("signature")})

    # --- start and cancel ----------------------------------------------------------------------------
    def start_job(self, principal: Principal, job_id: int) -> dict[str, Any]:
        """Start a job every party approved (for its current spec); the agents verify every approval again."""
        from sampan.deploy.consent.approval import Approval, ConsentRefused
        from sampan.deploy.consent.spec import JobSpec

        require(principal, "job.start")
        row = self._job_row(principal, job_id)
        if row.status != "approved":
            raise Conflict(f"job {job_id} is {row.status}: it starts once every party it reads approved", "job_id")
        decisions = {d.party: d for d in self._decisions(row.id, row.spec_hash) if d.approved}
        parties = list(row.spec.get("parties") or [])
        missing = [p for p in parties if p not in decisions]
        if missing:
            raise Conflict(f"job {job_id} lacks approvals of {missing}", "job_id")
        spec = JobSpec.model_validate(row.spec)
        approvals = [Approval.model_validate(decisions[p].approval) for p in parties]
        try:
            run_id = self.gateway.start(str(job_id), spec, row.config, approvals)
        except ConsentRefused as exc:
            self.audit(principal, "job_start_refused", {"job_id": job_id, "party": exc.party, "reason": exc.reason})
            raise Conflict(f"party {exc.party!r} refused to run job {job_id}: {exc.reason}", "job_id") from None
        with self.engine.begin() as c:
            c.execute(insert(db.runs).values(job_id=job_id, run_id=run_id, spec_hash=row.spec_hash,
                                             started_by=principal.actor, created_at=self.clock()))
            c.execute(update(db.jobs).where(db.jobs.c.id == job_id).values(status="running", updated_at=self.clock()))
        self.audit(principal, "job_started", {"job_id": job_id, "run_id": run_id, "spec_hash": row.spec_hash})
        return self.job(principal, job_id)

    def cancel_job(self, principal: Principal, job_id: int) -> dict[str, Any]:
        require(principal, "job.cancel")
        row = self._job_row(principal, job_id)
        if row.status in ("finished", "cancelled", "failed"):
            raise Conflict(f"job {job_id} is already {row.status}", "job_id")
        run_id = self.job(principal, job_id)["run_id"]
        if row.status == "running" and run_id:
            self.gateway.cancel(run_id)
        with self.engine.begin() as c:
            c.execute(update(db.jobs).where(db.jobs.c.id == job_id).values(status="cancelled",
                                                                          updated_at=self.clock()))
        self.audit(principal, "job_cancelled", {"job_id": job_id, "run_id": run_id})
        if row.status != "running":  # never started: every approval's reservation goes back (R14-WEB-3)
            approved = [d.party for d in self._decisions(row.id, row.spec_hash) if d.approved]
            self.release_reservations(principal, job_id, str(row.spec.get("job_id") or row.bindings["run_id"]),
                                      approved, "cancelled")
        return self.job(principal, job_id)

    def approvals(self, principal: Principal, job_id: int) -> list[dict[str, Any]]:
        """Every decision on the job's current spec (the signed approvals as the agents returned them)."""
        require(principal, "job.read")
        row = self._job_row(principal, job_id)
        return [row_dict(d) for d in self._decisions(row.id, row.spec_hash)]
