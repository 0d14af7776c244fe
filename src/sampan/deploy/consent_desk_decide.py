"""The consent desk's decisions (`consent.request`): a job is approved by a person's decision the party
accepts or by a standing rule that covers it, always within `[allow]`, its planned spend reserved in the
lifetime budget book before the approval is signed; one job id is bound to one spec; standing rules are added
and withdrawn here (a withdrawn rule voids its unopened approvals). The threat model is
`sampan.deploy.agent_consent`'s.
"""

from __future__ import annotations

import logging
from typing import Any

from sampan.deploy.allow import check_job
from sampan.deploy.allow_section import JobRefused
from sampan.deploy.consent import (
    Approval,
    ConsentRefused,
    JobSpec,
    StandingRule,
    allow_epsilon_reason,
    matches,
    rule_from_allow,
    sign_approval,
)
from sampan.deploy.consent_desk_state import DeskState
from sampan.deploy.consent_spec_check import check_spec
from sampan.privacy.owner_budget import BudgetRefused
from sampan.wire import Message

__all__ = ["DeskDecisions"]

log = logging.getLogger("sampan.deploy.party")


class DeskDecisions(DeskState):
    """`consent.request`, the party's standing rules and its decisions (`ConsentDesk`'s first job)."""

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
