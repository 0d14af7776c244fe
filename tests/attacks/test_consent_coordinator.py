"""A malicious coordinator against per-job consent and the lifetime budget (issue 14, items 2 and 3).

Each party agent runs a job only with its own signed approval of exactly that job's spec and every other
party's verified approval (`sampan.deploy.agent_consent`), and spends at most what it reserved at approval
(`sampan.deploy.run_budget`). The coordinator here speaks to real agents with real messages, as the hub
would deliver them: it (a) changes one column after approval, (b) replays an approval of another job,
(c) forges a signature or uses another party's certificate, (d) opens a run with no approvals, (e) drops a
partner's approval, (f) asks for a release beyond the reservation, (g) re-runs a job to reserve twice,
(h) relays a "console decision" to a party that does not accept them. Each attempt fails, nothing is served,
and the refusal is in the party's own signed audit log.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from _deploy_federation import ThreadFederation

from sampan.deploy.config import load_party_config
from sampan.deploy.consent import JobSpec, job_spec
from sampan.deploy.party_agent import PartyAgent
from sampan.wire import Message

CONFIG: dict[str, Any] = {
    "run": {"name": "consent", "workflow": "horizontal", "rounds": 2, "seed": 3},
    "privacy": {"epsilon": 1.0, "delta": 1e-5, "dp2": {"noise_multiplier": 1.2}},
    "deploy": {"dataset": "loans", "submitted_by": "ops"},
}


class Fed:
    """Three bank agents (not connected: the test is their coordinator) with budgets and [consent] settings."""

    def __init__(self, root: Path, *, budget: float = 5.0, consent: str = "") -> None:
        self.inner = ThreadFederation(root, start=False, n=300)
        self.agents: dict[str, PartyAgent] = {}
        for name, path in self.inner.files.party_configs.items():
            path.write_text(path.read_text() + f"\n[data.loans.budget]\nepsilon = {budget}\n" + consent)
            self.agents[name] = PartyAgent(load_party_config(path))
        self.names = sorted(self.agents)

    def spec(self, job_id: str, config: dict[str, Any] | None = None) -> JobSpec:
        agent = self.agents[self.names[0]]
        datasets = {n: {"dataset": "loans", "columns": agent.consent.served_columns("loans")} for n in self.names}
        return job_spec(config or CONFIG, parties=self.names, datasets=datasets, label_holder=None, operator="ops",
                        job_id=job_id)

    def ask(self, name: str, spec: JobSpec, decided_by: str = "operator:ops") -> Message:
        return self.agents[name].handle(Message(spec.job_id, 0, "coordinator", name, "consent.request",
                                                meta={"spec": spec.model_dump(mode="json"), "decided_by": decided_by}))

    def approve_all(self, spec: JobSpec) -> list[dict[str, Any]]:
        replies = [self.ask(n, spec) for n in self.names]
        assert all(r.kind == "consent.approval" for r in replies), [r.meta for r in replies]
        return [r.meta["approval"] for r in replies]

    def open(self, name: str, spec: JobSpec, approvals: list[dict[str, Any]] | None, *,
             run_id: str | None = None) -> Message:
        meta: dict[str, Any] = {"workflow": spec.workflow, "dataset": "loans", "test_fraction": 0.2, "split_seed": 1,
                                "job": spec.job, "spec": spec.model_dump(mode="json")}
        if approvals is not None:
            meta["approvals"] = approvals
        return self.agents[name].handle(Message(run_id or spec.job_id, 0, "coordinator", name, "deploy.open_run",
                                                meta=meta))

    def audit(self, name: str, run_id: str) -> list[tuple[str, dict[str, Any]]]:
        store = self.agents[name].store()
        assert store.verify_audit(run_id).ok
        return [(e.kind, dict(e.detail)) for e in store.events(run_id)]

    def refused_at_open(self, name: str, run_id: str, reply: Message, match: str) -> None:
        assert reply.is_error and match in str(reply.meta.get("error")), reply.meta
        assert run_id not in self.agents[name]._runs  # no handler was built
        refusals = [d for k, d in self.audit(name, run_id) if k == "job_refused"]
        assert refusals and refusals[-1]["rule"] == "consent" and match in refusals[-1]["reason"], refusals

    def close(self) -> None:
        self.inner.coordinator.security.close()


@pytest.fixture
def fed(tmp_path: Path) -> Any:
    federation = Fed(tmp_path)
    yield federation
    federation.close()


def test_an_honest_opening_with_every_approval_is_accepted(fed: Fed) -> None:
    spec = fed.spec("run-ok")
    approvals = fed.approve_all(spec)
    for name in fed.names:
        assert not fed.open(name, spec, approvals).is_error
        assert [k for k, _ in fed.audit(name, "run-ok")] == ["consent_approved", "job_accepted"]


def test_a_the_job_changed_by_one_column_after_approval_is_refused(fed: Fed) -> None:
    spec = fed.spec("run-a")
    approvals = fed.approve_all(spec)
    victim = fed.names[0]
    part = spec.data[victim]
    fewer = spec.model_copy(update={"data": {**spec.data, victim: part.model_copy(
        update={"columns": part.columns[:-1]})}})
    fed.refused_at_open(victim, "run-a", fed.open(victim, fewer, approvals), "holds no approval of job spec")
    # the same columns but one column more in the job it would serve: its own approval does not cover it either
    more = spec.model_copy(update={"data": {**spec.data, victim: part.model_copy(
        update={"columns": (*part.columns, "ssn")})}})
    fed.refused_at_open(victim, "run-a", fed.open(victim, more, approvals), "holds no approval of job spec")


def test_b_an_approval_of_another_job_is_not_replayed(fed: Fed) -> None:
    first = fed.spec("run-b1")
    old = fed.approve_all(first)
    second = fed.spec("run-b2", {**CONFIG, "run": {**CONFIG["run"], "rounds": 9}})
    victim, partner = fed.names[0], fed.names[1]
    fed.refused_at_open(victim, "run-b2", fed.open(victim, second, old), "holds no approval of job spec")
    own = fed.ask(victim, second).meta["approval"]  # the victim approved the second job; its partners did not
    replayed = [own, *[a for a in old if a["party"] != victim]]
    fed.refused_at_open(victim, "run-b2", fed.open(victim, second, replayed),
                        f"the approval of {partner!r} does not hold")


def test_c_a_forged_signature_or_another_party_s_certificate_is_refused(fed: Fed) -> None:
    spec = fed.spec("run-c")
    approvals = fed.approve_all(spec)
    victim, partner, third = fed.names
    by_party = {a["party"]: a for a in approvals}
    signature = bytearray(base64.b64decode(by_party[partner]["signature"]))
    signature[-1] ^= 1
    forged = {**by_party[partner], "signature": base64.b64encode(bytes(signature)).decode()}
    reply = fed.open(victim, spec, [by_party[victim], forged, by_party[third]])
    fed.refused_at_open(victim, "run-c", reply, "does not verify")
    # the third party's genuine signature and certificate, presented as the partner's approval
    posing = {**by_party[third], "party": partner, "dataset": "loans"}
    reply = fed.open(victim, spec, [by_party[victim], posing, by_party[third]])
    fed.refused_at_open(victim, "run-c", reply, f"the approval of {partner!r} does not hold")


def test_d_a_run_with_no_approvals_gets_nothing(fed: Fed) -> None:
    spec = fed.spec("run-d")
    fed.approve_all(spec)
    victim = fed.names[0]
    fed.refused_at_open(victim, "run-d", fed.open(victim, spec, None), "carries no approved job spec")
    bare = fed.agents[victim].handle(Message("run-d2", 0, "coordinator", victim, "deploy.open_run", meta={
        "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": spec.job}))
    fed.refused_at_open(victim, "run-d2", bare, "carries no approved job spec")
    fit = fed.agents[victim].handle(Message("run-d2", 1, "coordinator", victim, "describe", meta={}))
    assert fit.is_error and "no open run" in str(fit.meta.get("error"))  # no handler: no data read
    assert fed.agents[victim]._tables == {}  # its table was never even read


def test_e_a_dropped_partner_approval_is_refused(fed: Fed) -> None:
    spec = fed.spec("run-e")
    approvals = fed.approve_all(spec)
    victim, dropped = fed.names[0], fed.names[2]
    kept = [a for a in approvals if a["party"] != dropped]
    fed.refused_at_open(victim, "run-e", fed.open(victim, spec, kept), f"no approval from {dropped!r}")


def test_f_a_release_beyond_the_reservation_is_refused_before_it_leaves(fed: Fed) -> None:
    small = {**CONFIG, "privacy": {**CONFIG["privacy"], "epsilon": 0.05}}
    spec = fed.spec("run-f", small)
    approvals = fed.approve_all(spec)
    victim = fed.names[0]
    agent = fed.agents[victim]
    assert not fed.open(victim, spec, approvals).is_error
    # a row count released at noise multiplier 0.6 costs far more than epsilon 0.05
    reply = agent.handle(Message("run-f", 1, "coordinator", victim, "describe", meta={
        "dp_count": {"noise_multiplier": 0.6}}))
    assert reply.is_error and "reservation of epsilon 0.05" in str(reply.meta.get("error")), reply.meta
    assert "n_train" not in reply.meta
    assert agent.consent.book.entry("run-f").spent_epsilon == 0.0  # nothing charged: nothing released
    assert [k for k, _ in fed.audit(victim, "run-f")][-1] == "budget_refused"
    # an affordable release passes and is charged to the book, bounded by the reservation
    ok = agent.handle(Message("run-f", 1, "coordinator", victim, "describe", meta={
        "dp_count": {"noise_multiplier": 400.0}}))
    assert not ok.is_error, ok.meta
    spent = agent.consent.book.entry("run-f").spent_epsilon
    assert 0.0 < spent <= 0.05


def test_g_a_rerun_of_an_approved_job_reserves_nothing_more(fed: Fed) -> None:
    spec = fed.spec("run-g")
    approvals = fed.approve_all(spec)
    again = fed.approve_all(spec)  # asked twice: the same approval, one reservation
    assert again == approvals
    victim = fed.names[0]
    book = fed.agents[victim].consent.book
    assert [h["event"] for h in book.history("loans")] == ["reserve"]
    assert book.status("loans")["remaining_epsilon"] == pytest.approx(4.0)
    assert not fed.open(victim, spec, approvals).is_error
    fed.refused_at_open(victim, "run-g-again", fed.open(victim, spec, approvals, run_id="run-g-again"),
                        "an approval covers one run")
    assert book.status("loans")["remaining_epsilon"] == pytest.approx(4.0)


def test_h_a_console_decision_relayed_to_a_party_that_refuses_them_is_refused(tmp_path: Path) -> None:
    fed = Fed(tmp_path, consent="\n[consent]\nmode = \"explicit\"\nconsole_decisions = false\n")
    try:
        spec = fed.spec("run-h")
        victim = fed.names[0]
        for decided_by, rule in (("person:alice", "console_decisions"), ("operator:ops", "mode"),
                                 ("rule:allow", "mode")):
            reply = fed.ask(victim, spec, decided_by)
            assert reply.is_error and rule in str(reply.meta.get("error")), reply.meta
            refused = [d for k, d in fed.audit(victim, "run-h") if k == "consent_refused"]
            assert refused and refused[-1]["rule"] == rule and refused[-1]["decided_by"] == decided_by
        relayed_rule = fed.agents[victim].handle(Message("consent", 0, "coordinator", victim, "consent.request", meta={
            "rule": {"id": "anything", "party": victim}, "decided_by": "person:alice"}))
        assert relayed_rule.is_error and "console_decisions" in str(relayed_rule.meta.get("error"))
        assert fed.agents[victim].consent.records.rules() == []
        assert fed.agents[victim].consent.book.entry("run-h") is None  # nothing reserved
        # the party's own person approves locally (`sampan consent approve`): that one it accepts
        own = fed.agents[victim].consent.decide(spec, "person:local-officer", relayed=False)
        assert own.decided_by == "person:local-officer"
    finally:
        fed.close()


def test_a_party_that_trusts_its_console_takes_relayed_decisions_and_rules(tmp_path: Path) -> None:
    """Control for (h): with `console_decisions = true` a relayed person's decision and a relayed rule count;
    the rule then approves only the jobs it covers, naming the field it refuses on."""
    fed = Fed(tmp_path, consent="\n[consent]\nconsole_decisions = true\n")
    try:
        victim = fed.names[0]
        spec = fed.spec("run-i")
        approved = fed.ask(victim, spec, "person:alice")
        assert approved.kind == "consent.approval" and approved.meta["approval"]["decided_by"] == "person:alice"
        rule = {"id": "lr-small", "party": victim, "dataset": "loans", "model_kinds": ["logistic"], "max_epsilon": 0.5}
        added = fed.agents[victim].handle(Message("consent", 0, "coordinator", victim, "consent.request",
                                                  meta={"rule": rule, "decided_by": "person:alice"}))
        assert added.kind == "consent.rule_added", added.meta
        refused = fed.ask(victim, fed.spec("run-j"), "rule:lr-small")
        assert refused.is_error and "max_epsilon" in str(refused.meta.get("error")), refused.meta
        small = fed.spec("run-k", {**CONFIG, "privacy": {**CONFIG["privacy"], "epsilon": 0.5}})
        assert fed.ask(victim, small, "rule:lr-small").kind == "consent.approval"
    finally:
        fed.close()
