"""R14-WEB-15: removing a standing rule in the console leaves the agent's relayed copy in force.

Claim (service_jobs.add_rule, docs/api.md "standing rules (relayed to the agent when the gateway can)"): a rule
set in the console is relayed to the party's agent, which "keeps and applies its own copy". `remove_rule` only
marks the control plane's row inactive: nothing reaches the agent (`AgentGateway` has no removal, neither does
the agent's consent store). The console then lists the rule as removed, while the agent keeps approving jobs by it
(`AgentConsent._grounds`: every run submitted with decided_by "operator:..." or "rule:<id>" is matched against
`records.rules()`). An operator withdrawing standing consent is silently ignored. Fix: relay the removal
(`remove_rule(party, rule_id, decided_by)` on the gateway and the agent's consent store, audited both sides) and
refuse (409, nothing changed) when the agent cannot take it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _web_plane import consortium_with_banks, make_world  # noqa: E402


@pytest.mark.xfail(strict=True, reason="R14-WEB-15: a removed standing rule stays in force at the party's agent")
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
