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

from _deploy_federation import ThreadFederation  # noqa: E402

from sampan.deploy.config import load_party_config  # noqa: E402
from sampan.deploy.consent import StandingRule, job_spec  # noqa: E402
from sampan.deploy.party_agent import PartyAgent  # noqa: E402
from sampan.wire import Message  # noqa: E402

EXACT: dict[str, Any] = {"run": {"name": "exact", "workflow": "horizontal", "rounds": 2, "seed": 3},
                         "training": {"learning_rate": 0.1, "epochs": 1},
                         "deploy": {"dataset": "loans", "submitted_by": "ops"}}



def test_an_approval_granted_by_a_removed_rule_does_not_open(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agents = {name: PartyAgent(load_party_config(path)) for name, path in fed.files.party_configs.items()}
        names = sorted(agents)
        victim = agents[names[0]]
        victim.consent.add_rule(StandingRule(id="q4", party=names[0], dataset="loans").model_dump(mode="json"),
                                "person:alice", relayed=False)
        # a second rule that does not cover the job: after q4 goes, the party still holds rules of its own, so
        # [allow] approves nothing by itself (with no rule of its own, [allow] is its implicit rule by design)
        victim.consent.add_rule(StandingRule(id="trees", party=names[0], dataset="loans",
                                             model_kinds=["gbdt"]).model_dump(mode="json"),
                                "person:alice", relayed=False)
        columns = victim.consent.served_columns("loans")
        spec = job_spec(EXACT, parties=names, datasets={n: {"dataset": "loans", "columns": columns} for n in names},
                        label_holder=None, operator="ops", job_id="stockpiled-17")
        approvals = []
        for name in names:  # while rule q4 stands, the coordinator collects an approval of a job it runs later
            reply = agents[name].handle(Message("stockpiled-17", 0, "coordinator", name, "consent.request",
                                                meta={"spec": spec.model_dump(mode="json"),
                                                      "decided_by": "operator:ops"}))
            assert reply.kind == "consent.approval", reply.meta
            approvals.append(reply.meta["approval"])
        assert victim.consent.remove_rule("q4", "person:alice", relayed=False)  # `sampan consent remove-rule q4`
        again = victim.handle(Message("stockpiled-17", 0, "coordinator", names[0], "consent.request",
                                      meta={"spec": spec.model_dump(mode="json"), "decided_by": "operator:ops"}))
        opened = victim.handle(Message("stockpiled-17", 0, "coordinator", names[0], "deploy.open_run", meta={
            "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": spec.job,
            "spec": spec.model_dump(mode="json"), "approvals": approvals}))
        assert again.is_error and opened.is_error, (
            f"after rule q4 was withdrawn: re-request -> {again.kind}, open_run -> {opened.kind} (data served)")
    finally:
        fed.coordinator.security.close()


def test_an_expired_rule_s_approval_does_not_open_and_a_removed_rule_returns_its_reservation(tmp_path: Path) -> None:
    """R14-CONSENT2-3, the other two ways: a rule that expired after it approved a job no longer opens it,
    and withdrawing a rule returns the reservations of the jobs it approved that never opened."""
    import datetime as dt

    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agents = {name: PartyAgent(load_party_config(path)) for name, path in fed.files.party_configs.items()}
        names = sorted(agents)
        victim = agents[names[0]]
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        for rule_id in ("q4", "trees"):
            victim.consent.add_rule(StandingRule(id=rule_id, party=names[0], dataset="loans", expires_at=soon,
                                                 model_kinds=None if rule_id == "q4" else ["gbdt"]
                                                 ).model_dump(mode="json"), "person:alice", relayed=False)
        columns = victim.consent.served_columns("loans")
        datasets = {n: {"dataset": "loans", "columns": columns} for n in names}
        dp = {**EXACT, "privacy": {"epsilon": 1.0, "delta": 1e-5}}
        specs = {job: job_spec(dp, parties=names, datasets=datasets, label_holder=None, operator="ops", job_id=job)
                 for job in ("late-1", "late-2")}
        approvals: dict[str, list[Any]] = {job: [] for job in specs}
        for job, spec in specs.items():
            for name in names:
                reply = agents[name].handle(Message(job, 0, "coordinator", name, "consent.request",
                                                    meta={"spec": spec.model_dump(mode="json"),
                                                          "decided_by": "operator:ops"}))
                assert reply.kind == "consent.approval", reply.meta
                approvals[job].append(reply.meta["approval"])
        assert victim.consent.book.status("loans")["reserved_epsilon"] == pytest.approx(2.0)
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)  # the rule lapses (same id, now expired)
        victim.consent.add_rule(StandingRule(id="q4", party=names[0], dataset="loans", expires_at=past
                                             ).model_dump(mode="json"), "person:alice", relayed=False)
        opened = victim.handle(Message("late-1", 0, "coordinator", names[0], "deploy.open_run", meta={
            "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1,
            "job": specs["late-1"].job, "spec": specs["late-1"].model_dump(mode="json"),
            "approvals": approvals["late-1"]}))
        assert opened.is_error and "expired" in str(opened.meta.get("error")), opened.meta
        assert victim.consent.remove_rule("q4", "person:alice", relayed=False)
        assert victim.consent.book.status("loans")["reserved_epsilon"] == pytest.approx(0.0)  # both returned
    finally:
        fed.coordinator.security.close()
