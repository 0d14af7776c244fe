"""Standing rules: a party's advance consent to every job of one shape ("logistic regression on dataset X,
epsilon <= 1, these columns only").

A rule is checked against the job spec the party recomputed itself (`matches`: an empty list means it
matches; otherwise one reason per failing field, naming the field). `[allow]` in party.toml is the party's
hard limit: a job it refuses (`sampan.deploy.allow.check_job`, plus its optional `max_epsilon`) is refused
whoever approves it (a person, a rule). While the party holds no standing rule of its own, `[allow]` is also
its one implicit rule "allow" (`rule_from_allow`), so a deployment written for the earlier allow-list approves
exactly the jobs it accepted before. Once it holds rules of its own, `[allow]` approves nothing by itself: only
those rules do (review R14-CONSENT-6: otherwise a narrower rule, "epsilon <= 0.5", would restrict nothing
while the permissive implicit rule approved any epsilon).

Rules added through the console reach the party as `consent.request`s (`sampan.deploy.agent_consent`) and
are accepted only when the party trusts relayed decisions (`[consent] console_decisions = true`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sampan.deploy.allow_section import AllowSection, JobRefused
from sampan.deploy.consent.spec import JobSpec

__all__ = ["StandingRule", "allow_epsilon_reason", "matches", "rule_from_allow"]


class StandingRule(BaseModel):
    """Advance consent of `party` to jobs on `dataset` within these limits (None: any)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=128)
    party: str
    dataset: str | None = None
    workflows: list[str] | None = None
    model_kinds: list[str] | None = None
    max_epsilon: float | None = Field(None, ge=0, description="most epsilon one job may reserve")
    max_delta: float | None = Field(None, ge=0, le=1)
    columns: list[str] | None = Field(None, description="columns a job may read (it may read a subset)")
    partners: list[str] | None = None
    label_holders: list[str] | None = None
    operators: list[str] | None = None
    require: list[str] = Field(default_factory=list, description="protections every job must use")
    expires_at: dt.datetime | None = None
    allow: AllowSection | None = Field(None, description="the [allow] checks this rule stands for (check_job)")


def rule_from_allow(allow: AllowSection | None, party: str) -> StandingRule:
    """The `[allow]` section (or its defaults) as the party's local standing rule "allow"."""
    section = allow or AllowSection.model_validate({})
    return StandingRule.model_validate({"id": "allow", "party": party, "allow": section})


def matches(rule: StandingRule, spec: JobSpec, party: str, *, now: dt.datetime | None = None) -> list[str]:
    """Why `rule` does not cover `spec` for `party` (empty: it does)."""
    reasons: list[str] = []
    part = spec.data.get(party)
    if rule.party != party:
        reasons.append(f"party: the rule is {rule.party!r}'s, not {party!r}'s")
    if part is None:
        return [*reasons, f"data: the job reads no dataset of {party!r}"]
    if rule.expires_at is not None:
        expiry = rule.expires_at if rule.expires_at.tzinfo else rule.expires_at.replace(tzinfo=dt.UTC)
        if (now or dt.datetime.now(dt.UTC)) >= expiry:
            reasons.append(f"expires_at: the rule expired at {expiry.isoformat()}")
    if rule.dataset is not None and part.dataset != rule.dataset:
        reasons.append(f"dataset: the job reads {part.dataset!r}, the rule covers {rule.dataset!r}")
    if rule.workflows is not None and spec.workflow not in rule.workflows:
        reasons.append(f"workflows: {spec.workflow!r} is not one of {rule.workflows}")
    kind = str(spec.model.get("kind"))
    if rule.model_kinds is not None and kind not in rule.model_kinds:
        reasons.append(f"model_kinds: {kind!r} is not one of {rule.model_kinds}")
    planned = spec.planned()
    if rule.max_epsilon is not None:
        if planned is None:
            reasons.append(f"max_epsilon: the job uses DP without a stated epsilon; the rule caps it at "
                           f"{rule.max_epsilon}")
        elif planned[0] > rule.max_epsilon:
            reasons.append(f"max_epsilon: the job plans epsilon {planned[0]:g} > {rule.max_epsilon:g}")
    if rule.max_delta is not None and planned is not None and planned[1] > rule.max_delta:
        reasons.append(f"max_delta: the job plans delta {planned[1]:g} > {rule.max_delta:g}")
    if rule.columns is not None:
        extra = sorted(set(part.columns) - set(rule.columns))
        if extra:
            reasons.append(f"columns: the job reads {extra}, outside the rule's columns")
    partners = sorted(p for p in spec.parties if p != party)
    if rule.partners is not None and set(partners) - set(rule.partners):
        reasons.append(f"partners: {sorted(set(partners) - set(rule.partners))} are not among {rule.partners}")
    if rule.label_holders is not None and spec.label_holder is not None and \
            spec.label_holder not in rule.label_holders:
        reasons.append(f"label_holders: {spec.label_holder!r} is not one of {rule.label_holders}")
    if rule.operators is not None and spec.operator not in rule.operators:
        reasons.append(f"operators: submitted by {spec.operator!r}, not one of {rule.operators}")
    lacking = sorted(set(rule.require) - set(spec.protections))
    if lacking:
        reasons.append(f"require: the job lacks {lacking} (it has {list(spec.protections)})")
    if rule.allow is not None:
        reasons += allow_reasons(rule.allow, spec, party)
    return reasons


def allow_reasons(allow: AllowSection | None, spec: JobSpec, party: str) -> list[str]:
    """`check_job`'s refusal of the spec's job at this party, as a reason naming the `[allow]` key."""
    from sampan.deploy.allow import check_job

    part = spec.data.get(party)
    if part is None:
        return [f"data: the job reads no dataset of {party!r}"]
    job: dict[str, Any] = {**spec.job, "workflow": spec.workflow}
    try:
        check_job(allow, party, job, part.dataset, list(part.columns))
    except JobRefused as exc:
        return [f"allow.{exc.rule}: {exc.reason}"]
    reason = allow_epsilon_reason(allow, spec)
    return [f"allow.max_epsilon: {reason}"] if reason else []


def allow_epsilon_reason(allow: AllowSection | None, spec: JobSpec) -> str | None:
    """Why `[allow] max_epsilon` refuses the job's planned epsilon (None: it does not)."""
    cap = allow.max_epsilon if allow is not None else None
    if cap is None:
        return None
    planned = spec.planned()
    if planned is None:
        return f"the job uses DP without a stated epsilon; [allow] caps one job at epsilon {cap:g}"
    if planned[0] > cap:
        return f"the job plans epsilon {planned[0]:g} > {cap:g}, the most [allow] lets one job reserve"
    return None
