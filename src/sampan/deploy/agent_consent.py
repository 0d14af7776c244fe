"""The party agent's consent desk: it decides `consent.request`s, describes its datasets (`consent.catalogue`)
and admits a run at `deploy.open_run` only with consent.

Threat model: the coordinator (and the console on its host) may be malicious. It may send a spec other
than the one a person saw, change the job after approval, replay or forge approvals, drop a partner's, open
a run without any, re-run an approved job, or relay a "decision" no person made. The agent therefore:
- recomputes the spec hash itself and checks the spec against what it will serve (its dataset and exactly
  the columns it reads, the job description — whose rounds, training and model must be the spec's,
  `sampan.deploy.consent_spec_check` —, its code version) and against `[allow]`, its hard limit;
- binds a job id to one spec: a second spec under a job id it approved or opened is refused, and every
  opening of a job shares one reservation (review R14-CONSENT2-4);
- decides by its own rules (`[consent] mode = "rules"`: the rules added locally or, only with
  `console_decisions = true`, through the console; while it holds none, `[allow]` as its one implicit
  rule, R14-CONSENT-6), or by a person's decision
  (relayed from the console only with `console_decisions = true`; locally with `sampan consent approve`);
- reserves the job's planned (epsilon, delta) in its lifetime budget book before it signs (a job over the
  remainder or the period cap is refused), keeps the approval it signed in its own store, and writes every
  decision and refusal to its own signed audit log;
- at `deploy.open_run` requires ITS OWN stored approval for exactly this spec hash, the spec's job id to be
  the run id (one approval, one run: a re-run cannot reserve twice, and a job id once closed is never
  admitted again, review R14-CONSENT-7), the job description and columns it is asked to serve to be the
  spec's, the standing rule that granted its approval to still stand unexpired (removing a rule voids its
  unopened approvals and returns their reservations, review R14-CONSENT2-3), `[allow] max_epsilon` to hold,
  and every party's approval to verify (CA, CRL, name, signature) — else no handler is built and no data read;
- on `consent.release` (the control plane's cancel of an unstarted job, an operator's refusal after approving,
  an edit that voids approvals) withdraws its approval of a job that never opened here: the stored approval is
  voided and the whole reservation returns to the budget (audited); a job that opened is refused (its spend
  stays; it is settled when it closes) (review R14-WEB-3).
Residual trust: with `console_decisions = true` the console host could fake an operator's click; a party
that does not trust it keeps the flag false and approves locally or by rules.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sampan.deploy.allow import check_job
from sampan.deploy.allow_section import JobRefused
from sampan.deploy.consent import (
    Approval,
    ConsentRefused,
    ConsentStore,
    JobSpec,
    StandingRule,
    allow_epsilon_reason,
    matches,
    rule_from_allow,
    sign_approval,
    verify_approval,
)
from sampan.deploy.consent_spec_check import check_spec, granting_rule_reason
from sampan.deploy.run_budget import JobReservation
from sampan.privacy.owner_budget import BudgetRefused, DatasetBudget, OwnerBudgetBook
from sampan.wire import Message

if TYPE_CHECKING:
    from sampan.deploy.config import PartyConfig

__all__ = ["ConsentDesk"]

log = logging.getLogger("sampan.deploy.party")


class ConsentDesk:
    """One party's consent decisions and budget book (`PartyAgent.consent`)."""

    def __init__(self, config: PartyConfig, audit: Any, signer: Any = None, *,
                 current: Callable[[], PartyConfig] | None = None) -> None:
        self._config, self._current, self.name = config, current, config.party.name
        self._audit = audit  # (run_id, kind, detail) -> None: the party's own signed audit log
        self.signer = signer  # anything with .sign(bytes) and .certificate_pem (an HSM key too); default its TLS key
        state = Path(config.party.state_dir)
        self.records = ConsentStore(state)
        limits = {name: (DatasetBudget(b.budget.epsilon, b.budget.delta, b.budget.period_days, b.budget.period_epsilon)
                         if b.budget is not None else None) for name, b in config.data.items()}
        self.book = OwnerBudgetBook(state / "owner-budget.json", self.name, limits)
        self._gate = threading.Lock()  # a release and an opening of the same job never interleave
        self._runs: dict[str, tuple[JobSpec, JobReservation]] = {}  # one shared reservation per open job id

    @property
    def config(self) -> PartyConfig:
        """The party's configuration as its agent holds it now (`current`), else the one given."""
        return self._current() if self._current is not None else self._config

    # --- keys -----------------------------------------------------------------------------------------
    def _signer(self) -> Any:
        if self.signer is None:  # the TLS key file, or with [hsm] the organisation key in an HSM
            from sampan.deploy.identity_source import load_identity

            self.signer = load_identity(self.config)
        return self.signer

    def verifier(self) -> Any:
        from sampan.deploy.identity_source import load_verifier

        return load_verifier(self.config.tls, Path(self.config.party.state_dir) / "revocation_high_water.json")

    # --- what it serves ---------------------------------------------------------------------------------
    def served_columns(self, dataset: str) -> list[str]:
        return [c.name for c in self.config.data[dataset].schema_.features]

    # --- decisions ----------------------------------------------------------------------------------------
    def request(self, message: Message) -> Message:
        """`consent.request`: decide, reserve, sign; or add a rule relayed from the console."""
        decided_by = str(message.meta.get("decided_by") or "")
        try:
            if message.meta.get("rule") is not None:
                rule = self.add_rule(message.meta["rule"], decided_by, relayed=True)
                return message.reply("consent.rule_added", meta={"rule": rule.model_dump(mode="json")})
            if message.meta.get("remove_rule") is not None:  # R14-WEB-15: a rule withdrawn in the console
                removed = self.remove_rule(str(message.meta["remove_rule"]), decided_by, relayed=True)
                return message.reply("consent.rule_removed", meta={"rule_id": str(message.meta["remove_rule"]),
                                                                   "removed": removed})
            try:
                spec = JobSpec.model_validate(message.meta.get("spec"))
            except Exception as exc:  # noqa: BLE001 - a malformed spec is refused with the reason
                raise ConsentRefused(self.name, f"spec: not a valid job spec ({exc})") from None
            approval = self.decide(spec, decided_by, relayed=True)
        except (ConsentRefused, ValueError) as exc:
            return message.error_reply(exc)
        return message.reply("consent.approval", meta={"approval": approval.model_dump(mode="json")})

    def add_rule(self, raw: Any, decided_by: str, *, relayed: bool) -> StandingRule:
        if relayed and not self.config.consent.console_decisions:
            reason = ("console_decisions: this party does not accept rules relayed from the console "
                      "([consent] console_decisions = false); add it locally")
            self._audit("consent", "consent_refused", {"rule": raw, "decided_by": decided_by, "reason": reason})
            raise ConsentRefused(self.name, reason)
        rule = StandingRule.model_validate(raw)
        if rule.party != self.name:
            raise ConsentRefused(self.name, f"party: the rule is for {rule.party!r}")
        self.records.add_rule(rule)
        self._audit("consent", "consent_rule_added", {"rule": rule.model_dump(mode="json"), "decided_by": decided_by})
        return rule

    def remove_rule(self, rule_id: str, decided_by: str, *, relayed: bool) -> bool:
        """Withdraw the standing rule `rule_id` (True: it was held). Relayed from the console only with
        `[consent] console_decisions = true` (the flag that let the console add it); `allow` is party.toml's."""
        if rule_id == "allow":
            raise ConsentRefused(self.name, "rule 'allow' is party.toml's [allow] section; edit party.toml")
        if relayed and not self.config.consent.console_decisions:
            reason = ("console_decisions: this party does not accept rule changes relayed from the console "
                      "([consent] console_decisions = false); remove it locally")
            self._audit("consent", "consent_refused", {"remove_rule": rule_id, "decided_by": decided_by,
                                                       "reason": reason})
            raise ConsentRefused(self.name, reason)
        with self._gate:
            removed = self.records.remove_rule(rule_id)
            voided = self._void_granted_by(rule_id) if removed is not None else []
        self._audit("consent", "consent_rule_removed", {"rule_id": rule_id, "decided_by": decided_by,
                                                        "held": removed is not None, "voided_jobs": voided})
        return removed is not None

    def _void_granted_by(self, rule_id: str) -> list[str]:
        """A withdrawn rule takes its unopened approvals with it (review R14-CONSENT2-3): each is voided and
        its reservation returns to the budget. Jobs that opened keep running (their spend stays)."""
        voided = []
        for approval in self.records.approvals():
            record = self.records.job_record(approval.job_id) or {}
            if record.get("rule") != rule_id or record.get("state") != "approved":
                continue
            try:
                self.book.release(approval.job_id)
            except BudgetRefused:
                continue  # it already spent: it stays, as a job that opened
            self.records.void_approval(approval.spec_hash)
            self.records.set_job_state(approval.job_id, "released")
            voided.append(approval.job_id)
        return voided

    def decide(self, spec: JobSpec, decided_by: str, *, relayed: bool) -> Approval:
        """This party's approval of `spec` (its stored one, if it approved it before), or ConsentRefused.

        `relayed`: the decision came through the coordinator (a console decision or an operator's submit);
        False for the local CLI (`sampan consent approve`)."""
        spec_hash = spec.spec_hash()
        existing = self.records.approval(spec_hash)
        if existing is not None:  # idempotent: a crash between signing and replying leaves one approval
            return existing
        try:
            self._one_spec_per_job(spec, spec_hash)
            rule = self._grounds(spec, decided_by, relayed=relayed)
            part = spec.data[self.name]
            planned = spec.planned()
            try:
                entry = self.book.reserve(spec.job_id, part.dataset, *(planned or (0.0, 0.0)),
                                          open_ended=planned is None)
            except BudgetRefused as exc:
                raise ConsentRefused(self.name, f"budget: {exc}", rule="budget") from None
            reserved = {"epsilon": entry.reserved_epsilon, "delta": entry.reserved_delta,
                        "open_ended": entry.open_ended}
            approval = self.records.save_approval(sign_approval(self._signer(), spec, party=self.name,
                                                                decided_by=decided_by, reserved=reserved))
            # the job id is bound to this spec, and the approval to the rule that granted it (R14-CONSENT2-3/4)
            self.records.set_job_state(spec.job_id, "approved", spec_hash=spec_hash, rule=rule)
        except ConsentRefused as exc:
            log.warning("party %s refused consent to job %s (%s): %s", self.name, spec.job_id, decided_by, exc.reason)
            self._audit(spec.job_id, "consent_refused", {"spec_hash": spec_hash, "decided_by": decided_by,
                                                          "rule": exc.rule, "reason": exc.reason})
            raise
        self._audit(spec.job_id, "consent_approved", {"spec_hash": spec_hash, "decided_by": decided_by,
                                                       "rule": rule, "dataset": spec.data[self.name].dataset,
                                                       "columns": list(spec.data[self.name].columns),
                                                       "reserved": reserved, "exact": planned == (0.0, 0.0)})
        log.info("party %s approved job %s (%s%s), reserved epsilon %g", self.name, spec.job_id, decided_by,
                 f", rule {rule}" if rule else "", reserved["epsilon"])
        return approval

    def _one_spec_per_job(self, spec: JobSpec, spec_hash: str) -> None:
        """One job id, one spec (review R14-CONSENT2-4): a second spec under a job id that holds an approval
        of another, or that already opened or closed here, is refused (release the first, or use a new id)."""
        other = [a.spec_hash for a in self.records.approvals() if a.job_id == spec.job_id and a.spec_hash != spec_hash]
        state = self.records.job_state(spec.job_id)
        if other or state in ("opened", "closed"):
            raise ConsentRefused(self.name, f"job_id: {spec.job_id!r} is already bound here to another job spec "
                                 f"({'approved' if other else state}); withdraw it (consent.release) or submit the "
                                 "job under a new id", rule="job_id")

    def _grounds(self, spec: JobSpec, decided_by: str, *, relayed: bool) -> str | None:
        """Why this party may approve: a person's decision it accepts, or a standing rule that covers the
        job (the rule's id). [allow] is a hard limit either way."""
        check_spec(self.name, spec, self.config.data, self.served_columns)
        part = spec.data[self.name]
        try:  # [allow] is the hard limit whoever decides (its refusal reads as it did at deploy.open_run)
            check_job(self.config.allow, self.name, {**spec.job, "workflow": spec.workflow}, part.dataset,
                      list(part.columns))
        except JobRefused as exc:
            raise ConsentRefused(self.name, str(exc), rule=exc.rule) from None
        over = allow_epsilon_reason(self.config.allow, spec)
        if over:
            raise ConsentRefused(self.name, f"party {self.name!r} refuses this job (max_epsilon): {over}",
                                 rule="max_epsilon")
        kind = decided_by.split(":", 1)[0]
        consent = self.config.consent
        if kind == "person":
            if relayed and not consent.console_decisions:
                raise ConsentRefused(self.name, "console_decisions: this party does not accept decisions relayed "
                                     "from the console ([consent] console_decisions = false); approve it locally "
                                     "with `sampan consent approve`", rule="console_decisions")
            return None
        if kind not in ("rule", "operator"):
            raise ConsentRefused(self.name, f"decided_by: {decided_by!r} is not person:, rule: or operator:")
        if consent.mode == "explicit":
            raise ConsentRefused(self.name, "mode: this party approves every job explicitly ([consent] mode = "
                                 "\"explicit\"); a person must decide", rule="mode")
        own = self.records.rules()  # once the party holds rules of its own, [allow] approves nothing by itself
        rules = own or [rule_from_allow(self.config.allow, self.name)]
        wanted = decided_by.split(":", 1)[1] if kind == "rule" else None
        why: list[str] = []
        for rule in rules:
            if wanted is not None and rule.id != wanted:
                continue
            reasons = matches(rule, spec, self.name)
            if not reasons:
                return rule.id
            why.append(f"rule {rule.id!r}: " + "; ".join(reasons))
        raise ConsentRefused(self.name, "no standing rule covers the job" + (f" ({' | '.join(why)})" if why else
                                                                              f" (no rule {wanted!r})"), rule="rules")

    # --- the catalogue ------------------------------------------------------------------------------------
    def catalogue(self, message: Message) -> Message:
        """`consent.catalogue`: each bound dataset's schema, published size and budget status (never rows).

        The size is the operator's declared `[data.<name>] public_rows` (None: not published), never the table's
        count: an exact count answered on request, outside any job and uncharged, would tell the coordinator
        whether one customer was added or removed (review R14-CONSENT-5). The table is not read here."""
        out = []
        for name, binding in self.config.data.items():
            schema = binding.schema_
            out.append({"name": name, "columns": [{"name": c.name, "kind": c.kind} for c in schema.features],
                        "label": schema.label_column, "id": schema.id_column, "rows": binding.public_rows,
                        "budget": {**self.book.status(name), "history": self.book.history(name)}})
        return message.reply("consent.catalogue", meta={"datasets": out})

    # --- opening a run -----------------------------------------------------------------------------------
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

    # --- withdrawing an approval --------------------------------------------------------------------------
    def release(self, message: Message) -> Message:
        """`consent.release` {job_id, decided_by}: withdraw this party's approval of a job that never opened
        here (its stored approvals of the job are voided, its whole reservation returns). Refused for a job
        that opened (what it spent stays; it is settled when it closes). Idempotent."""
        job_id = str(message.meta.get("job_id") or message.run_id)
        decided_by = str(message.meta.get("decided_by") or "")
        with self._gate:
            state = self.records.job_state(job_id)
            if state in ("opened", "closed"):
                reason = (f"job {job_id!r} already {'opened' if state == 'opened' else 'ran and closed'} at "
                          f"{self.name!r}: its approval cannot be withdrawn (cancel the run; what it spent stays)")
                self._audit(job_id, "consent_release_refused", {"decided_by": decided_by, "reason": reason})
                return message.error_reply(ConsentRefused(self.name, reason, rule="release"))
            try:
                entry = self.book.release(job_id)
            except BudgetRefused as exc:
                self._audit(job_id, "consent_release_refused", {"decided_by": decided_by, "reason": str(exc)})
                return message.error_reply(ConsentRefused(self.name, str(exc), rule="release"))
            voided = [a.spec_hash for a in self.records.approvals() if a.job_id == job_id]
            for spec_hash in voided:
                self.records.void_approval(spec_hash)
            if entry is not None or voided:
                self.records.set_job_state(job_id, "released")
        released = {"epsilon": entry.reserved_epsilon if entry else 0.0,
                    "delta": entry.reserved_delta if entry else 0.0}
        if entry is not None or voided:
            self._audit(job_id, "consent_released", {"decided_by": decided_by, "voided_spec_hashes": voided,
                                                     "released": released})
            log.info("party %s released job %s (%s): approval voided, epsilon %g returned", self.name, job_id,
                     decided_by, released["epsilon"])
        return message.reply("consent.released", meta={"job_id": job_id, "voided": len(voided),
                                                       "released": released})
