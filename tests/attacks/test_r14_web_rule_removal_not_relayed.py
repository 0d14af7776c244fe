"""R14-WEB-15: removing a standing rule in the console leaves the agent's relayed copy in force.

Claim (service_jobs.add_rule, docs/api.md "standing rules (relayed to the agent when the gateway can)"): a rule
set in the console is relayed to the party's agent, which "keeps and applies its own copy". `remove_rule` only
marks the control plane's row inactive: nothing reaches the agent (`AgentGateway` has no removal, neither does
the agent's consent store). The console then lists the rule as removed, while the agent keeps approving jobs by it
(`AgentConsent._grounds`: every run submitted with decided_by "operator:..." or "rule:<id>" is matched against
`records.rules()`). An operator withdrawing standing consent is silently ignored. Fix: relay the removal
(`remove_rule(party, rule_id, decided_by)` on the gateway and the agent's consent store, audited both sides) and
refuse (409, nothing changed) when the agent cannot take it.
Fixed: the removal is relayed (`consent.request` {remove_rule}); the agent drops its copy and audits it; a
refusal is a 409 and the console's rule stays active."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _web_plane import consortium_with_banks, make_world  # noqa: E402


def test_a_removed_rule_is_removed_at_the_agent_too(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    _, operators = consortium_with_banks(world)
    operator = world.client(operators["bank_a"])
    added = operator.post("/api/v1/parties/bank_a/rules", json={"rule": {"id": "lr-any", "max_epsilon": 5.0}})
    assert added.status_code == 201
    assert [r["id"] for r in world.gateway.rules_of("bank_a")] == ["lr-any"]  # relayed, as claimed
    assert operator.delete(f"/api/v1/parties/bank_a/rules/{added.json()['id']}").status_code == 204
    assert [r["active"] for r in operator.get("/api/v1/parties/bank_a/rules").json()] == [False]  # console: gone
    in_force = [r for r in world.gateway.rules_of("bank_a") if r["id"] == "lr-any" and r.get("active", True)]
    assert in_force == [], "the agent still holds (and applies) the removed rule"


def test_a_removal_the_agent_refuses_changes_nothing(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    _, operators = consortium_with_banks(world)
    operator = world.client(operators["bank_a"])
    added = operator.post("/api/v1/parties/bank_a/rules", json={"rule": {"id": "lr-any", "max_epsilon": 5.0}})
    assert added.status_code == 201
    world.gateway.set_console_decisions("bank_a", False)  # the agent no longer takes the console's word
    refused = operator.delete(f"/api/v1/parties/bank_a/rules/{added.json()['id']}")
    assert refused.status_code == 409, refused.text
    assert [r["active"] for r in operator.get("/api/v1/parties/bank_a/rules").json()] == [True]
    assert [r["id"] for r in world.gateway.rules_of("bank_a")] == ["lr-any"]


def test_the_agent_drops_a_relayed_removal_and_audits_it(tmp_path: Path) -> None:
    from _deploy_federation import ThreadFederation

    from sampan.deploy.config import load_party_config
    from sampan.deploy.party_agent import PartyAgent
    from sampan.wire import Message

    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        name, path = sorted(fed.files.party_configs.items())[0]
        path.write_text(path.read_text() + "\n[consent]\nconsole_decisions = true\n")
        agent = PartyAgent(load_party_config(path))
        rule = {"id": "small", "party": name, "dataset": "loans", "max_epsilon": 0.5}
        added = agent.handle(Message("c", 0, "coordinator", name, "consent.request",
                                     meta={"rule": rule, "decided_by": "person:ops"}))
        assert added.kind == "consent.rule_added" and [r.id for r in agent.consent.records.rules()] == ["small"]
        removed = agent.handle(Message("c", 0, "coordinator", name, "consent.request",
                                       meta={"remove_rule": "small", "decided_by": "person:ops"}))
        assert removed.kind == "consent.rule_removed" and removed.meta["removed"] is True
        assert agent.consent.records.rules() == []
        events = [dict(e.detail) for e in agent.store().events("consent") if e.kind == "consent_rule_removed"]
        assert events and events[-1]["rule_id"] == "small" and events[-1]["decided_by"] == "person:ops"
    finally:
        fed.coordinator.security.close()
