"""R14-CONSENT3-3: narrowing a standing rule by re-adding it under the same id (`add_rule` replaces by id) leaves
the unopened approvals it granted under its old, wider terms valid: `deploy.open_run` re-checks only that the
granting rule id still exists and has not expired (`granting_rule_reason`), not that it still covers the job.

Claim (agent_consent.py, review R14-CONSENT2-3): at `deploy.open_run` the agent requires "the standing rule that
granted its approval to still stand unexpired (removing a rule voids its unopened approvals and returns their
reservations)". A party that replaces rule "r" (model_kinds [logistic, mlp]) with "r" (model_kinds [logistic])
has withdrawn its standing consent to MLPs, yet the coordinator opens the MLP job approved the minute before.
Suggested fix: `granting_rule_reason` re-runs `matches(rule, spec, me)` in full (any reason, not only
`expires_at`), and/or `add_rule` voids the unopened approvals granted by the rule it replaces (as `remove_rule`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _deploy_federation import ThreadFederation  # noqa: E402

from sampan.deploy.config import load_party_config  # noqa: E402
from sampan.deploy.consent import StandingRule, job_spec  # noqa: E402
from sampan.deploy.party_agent import PartyAgent  # noqa: E402
from sampan.wire import Message  # noqa: E402

MLP: dict[str, Any] = {"run": {"name": "mlp", "workflow": "horizontal", "rounds": 2, "seed": 3},
                       "model": {"kind": "mlp", "hidden": [8]},
                       "training": {"learning_rate": 0.1, "epochs": 1},
                       "deploy": {"dataset": "loans", "submitted_by": "ops"}}


@pytest.mark.xfail(strict=True, reason="R14-CONSENT3-3: a rule narrowed under its id keeps its old approvals")
def test_narrowing_the_granting_rule_stops_its_unopened_job(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agents = {name: PartyAgent(load_party_config(path)) for name, path in fed.files.party_configs.items()}
        names = sorted(agents)
        victim = agents[names[0]]
        wide = StandingRule(id="r", party=names[0], dataset="loans", model_kinds=["logistic", "mlp"])
        victim.consent.add_rule(wide.model_dump(mode="json"), "person:alice", relayed=False)
        columns = victim.consent.served_columns("loans")
        spec = job_spec(MLP, parties=names, datasets={n: {"dataset": "loans", "columns": columns} for n in names},
                        label_holder=None, operator="ops", job_id="run-n")
        approvals = []
        for name in names:
            reply = agents[name].handle(Message("run-n", 0, "coordinator", name, "consent.request",
                                                meta={"spec": spec.model_dump(mode="json"),
                                                      "decided_by": "operator:ops"}))
            assert reply.kind == "consent.approval", reply.meta
            approvals.append(reply.meta["approval"])
        narrow = StandingRule(id="r", party=names[0], dataset="loans", model_kinds=["logistic"])
        victim.consent.add_rule(narrow.model_dump(mode="json"), "person:alice", relayed=False)
        opened = victim.handle(Message("run-n", 0, "coordinator", names[0], "deploy.open_run", meta={
            "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": spec.job,
            "spec": spec.model_dump(mode="json"), "approvals": approvals}))
        assert opened.is_error, "an MLP job opened under rule 'r' after 'r' was narrowed to logistic only"
    finally:
        fed.coordinator.security.close()
