"""R14-CONSENT2-3: approvals a standing rule signed stay good after the party withdraws (or lets expire) the
rule: a coordinator stockpiles approvals while the rule is in force and runs them afterwards.

Claim (`sampan consent remove-rule`): "Withdraw a standing rule of this party (jobs it covered then need another
rule or a person)"; docs/deploy.md: a removed rule is no longer in force. But `ConsentDesk.decide` returns a
stored approval before it checks any grounds, and `admit_run` checks only that an approval is stored (never
that the rule that signed it still stands or has not expired). Exact jobs reserve 0, so the coordinator can
collect any number of approvals (job ids of its choosing) under a rule and run them after the party withdrew
it (or after `expires_at`). The race "removal against a request" is the same hole seen from the other side.
Fixed: the granting rule id is recorded with the job (ConsentStore.set_job_state); removing a rule voids its
unopened approvals and returns their reservations, and admit_run re-checks that the rule still stands and has
not expired (a voided approval is gone, so a re-request is decided afresh by the rules the party holds now).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _consent_grant import (  # noqa: E402
    EXACT,
    add_local_rule,
    consent_federation,
    gather_approvals,
    loans_spec,
    open_run,
    request_consent,
)


def test_an_approval_granted_by_a_removed_rule_does_not_open(tmp_path: Path) -> None:
    with consent_federation(tmp_path) as (_, agents, names):
        victim = agents[names[0]]
        add_local_rule(victim, id="q4")
        # a second rule that does not cover the job: after q4 goes, the party still holds rules of its own, so
        # [allow] approves nothing by itself (with no rule of its own, [allow] is its implicit rule by design)
        add_local_rule(victim, id="trees", model_kinds=["gbdt"])
        spec = loans_spec(EXACT, names, victim.consent.served_columns("loans"), "stockpiled-17")
        # while rule q4 stands, the coordinator collects an approval of a job it runs later
        approvals, refused = gather_approvals(agents, names, spec)
        assert refused is None, refused.meta
        assert victim.consent.remove_rule("q4", "person:alice", relayed=False)  # `sampan consent remove-rule q4`
        again = request_consent(victim, spec)
        opened = open_run(victim, spec, approvals)
        assert again.is_error and opened.is_error, (
            f"after rule q4 was withdrawn: re-request -> {again.kind}, open_run -> {opened.kind} (data served)")


def test_an_expired_rule_s_approval_does_not_open_and_a_removed_rule_returns_its_reservation(tmp_path: Path) -> None:
    """R14-CONSENT2-3, the other two ways: a rule that expired after it approved a job no longer opens it,
    and withdrawing a rule returns the reservations of the jobs it approved that never opened."""
    import datetime as dt

    with consent_federation(tmp_path) as (_, agents, names):
        victim = agents[names[0]]
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        for rule_id in ("q4", "trees"):
            add_local_rule(victim, id=rule_id, expires_at=soon, model_kinds=None if rule_id == "q4" else ["gbdt"])
        columns = victim.consent.served_columns("loans")
        dp = {**EXACT, "privacy": {"epsilon": 1.0, "delta": 1e-5}}
        specs = {job: loans_spec(dp, names, columns, job) for job in ("late-1", "late-2")}
        approvals: dict[str, list[Any]] = {}
        for job, spec in specs.items():
            approvals[job], refused = gather_approvals(agents, names, spec)
            assert refused is None, refused.meta
        assert victim.consent.book.status("loans")["reserved_epsilon"] == pytest.approx(2.0)
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)  # the rule lapses (same id, now expired)
        add_local_rule(victim, id="q4", expires_at=past)
        opened = open_run(victim, specs["late-1"], approvals["late-1"])
        assert opened.is_error and "expired" in str(opened.meta.get("error")), opened.meta
        assert victim.consent.remove_rule("q4", "person:alice", relayed=False)
        assert victim.consent.book.status("loans")["reserved_epsilon"] == pytest.approx(0.0)  # both returned
