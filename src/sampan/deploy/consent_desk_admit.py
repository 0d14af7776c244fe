"""The consent desk's admission of a run at `deploy.open_run`: only with this party's own stored approval of
exactly the run's spec, job, dataset and columns, under a granting rule that still stands, within `[allow]
max_epsilon`, with every party's approval verified; one approval, one run (a closed or released job id never
opens again), and every opening of a job shares one reservation. The threat model is
`sampan.deploy.agent_consent`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sampan.deploy.allow_section import JobRefused
from sampan.deploy.consent import ConsentRefused, JobSpec, allow_epsilon_reason, rule_from_allow, verify_approval
from sampan.deploy.consent_desk_state import DeskState
from sampan.deploy.consent_spec_check import granting_rule_reason
from sampan.deploy.run_budget import JobReservation
from sampan.privacy.owner_budget import BudgetRefused
from sampan.wire import Message

__all__ = ["DeskAdmission"]


class DeskAdmission(DeskState):
    """Opening and closing a run against the party's consent (`ConsentDesk`'s second job)."""

    def admit_run(self, message: Message, dataset: str, job: dict[str, Any]) -> JobReservation:
        """Raise JobRefused (rule "consent") unless this run carries an approved spec this party signed for
        exactly this run, job, dataset and columns, the job id was never closed or released here, and every
        party's approval verifies. Returns the run's reservation (its budget bound)."""
        with self._gate:
            return self._admit_run(message, dataset, job)

    def _admit_run(self, message: Message, dataset: str, job: dict[str, Any]) -> JobReservation:
        me, meta = self.name, message.meta

        def refuse(reason: str) -> JobRefused:
            return JobRefused(me, "consent", reason)

        if not meta.get("spec") or not isinstance(meta.get("approvals"), list):
            raise refuse("the run carries no approved job spec and approvals; a job runs only after every party "
                         "whose data it reads approved it")
        try:
            spec = JobSpec.model_validate(meta["spec"])
        except Exception as exc:  # noqa: BLE001
            raise refuse(f"the run's job spec is malformed ({exc})") from None
        spec_hash = spec.spec_hash()
        own = self.records.approval(spec_hash)
        if own is None:
            raise refuse(f"this party holds no approval of job spec {spec_hash[:16]}… (it approved no job with "
                         "exactly this spec: a changed job needs a new approval)")
        if spec.job_id != message.run_id:
            raise refuse(f"the approved job is {spec.job_id!r}, not run {message.run_id!r} (an approval covers "
                         "one run)")
        record, entry = self.records.job_record(spec.job_id) or {}, self.book.entry(spec.job_id)
        state = record.get("state")
        if record.get("spec_hash") not in (None, spec_hash):  # one job id, one spec (review R14-CONSENT2-4)
            raise refuse(f"job {spec.job_id!r} is bound here to another job spec ({state}); an approval covers "
                         "one spec and one run")
        if state in ("closed", "released") or (entry is not None and entry.state == "settled"):
            ended = state or (entry.outcome if entry is not None else None)
            raise refuse(f"job {spec.job_id!r} was already {ended} here: one approval, one run (a closed job is "
                         "never opened again; run it as a new job)")
        if spec.workflow != job.get("workflow") or spec.data[me].dataset != dataset:
            raise refuse("the run's workflow or dataset is not the approved spec's")
        served = self.served_columns(dataset)
        if list(spec.data[me].columns) != served:
            raise refuse(f"the approved spec reads columns {list(spec.data[me].columns)}, this party would serve "
                         f"{served}")
        if {**spec.job, "workflow": spec.workflow} != job:
            raise refuse("the job description sent with the run is not the approved spec's")
        granted = record.get("rule")
        gone = granting_rule_reason(None if granted is None else str(granted), self.records.rules(),
                                    rule_from_allow(self.config.allow, me), spec, me)
        if gone:  # the granting rule must still stand and be in force (review R14-CONSENT2-3)
            raise refuse(gone)
        over = allow_epsilon_reason(self.config.allow, spec)
        if over:
            raise refuse(f"[allow] max_epsilon: {over}")
        verifier = self.verifier()
        given: dict[str, Any] = {}
        for raw in meta["approvals"]:
            party = str(raw.get("party")) if isinstance(raw, dict) else "?"
            given.setdefault(party, raw)
        for party in spec.parties:
            if party not in given:
                raise refuse(f"no approval from {party!r} travels with the run: this party does not run with a "
                             "partner that did not consent")
            try:
                verify_approval(given[party], spec, verifier)
            except ConsentRefused as exc:
                raise refuse(f"the approval of {party!r} does not hold: {exc.reason}") from None
        held = self._runs.get(spec.job_id)
        if held is not None and held[0].spec_hash() == spec_hash:  # a re-open shares the run's one ledger
            return held[1]
        try:
            reservation = JobReservation(self.book, spec.job_id, me, accountant=spec.privacy.accountant or "rdp",
                                         state_dir=Path(self.config.party.state_dir),
                                         on_refuse=lambda reason: self._audit(message.run_id, "budget_refused",
                                                                              {"reason": reason}))
        except BudgetRefused as exc:
            raise refuse(str(exc)) from None
        self.records.set_job_state(spec.job_id, "opened")
        self._runs[spec.job_id] = (spec, reservation)
        return reservation

    def approved_spec(self, run_id: str) -> JobSpec | None:
        """The spec an open run was admitted under (its rounds bound the run's `fit`s)."""
        held = self._runs.get(run_id)
        return held[0] if held is not None else None

    def settle(self, run_id: str, outcome: str) -> None:
        """The run closed: its spend stays, the rest of its reservation returns, and the job id is closed here
        (never admitted again)."""
        with self._gate:
            entry = self.book.settle(run_id, outcome)
            self._runs.pop(run_id, None)
            if entry is not None:
                self.records.set_job_state(run_id, "closed")
        if entry is not None:
            self._audit(run_id, "budget_settled", {"spent_epsilon": entry.spent_epsilon,
                                                   "spent_delta": entry.spent_delta,
                                                   "released_epsilon": max(entry.reserved_epsilon
                                                                           - entry.spent_epsilon, 0.0)})
