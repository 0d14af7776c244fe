"""R14-CONSENT3-5: `job["bank_alone"]` (train a model on each bank's rows ALONE and release it per bank, in the
clear, never under SecAgg) is a field of the job description the agent enforces (`allow_requests._check_bank_alone`:
allowed "only in a horizontal job that announced it") that nothing in the spec a decision reads pins: no spec
field, no standing-rule field, not the approve summary; `check_spec` does not look at it.

Claim (consent/spec.py): "a party's consent must cover what the job DOES with its data (... the model, the
rounds, ...) and nothing looser"; consent_spec_check.py: "every field one side reads and the other enforces is
compared here". A coordinator adds `bank_alone = {epochs: 50}` to an exact SecAgg-free job's description; the
party's standing rule (here the implicit `[allow]` rule) approves it, and the per-bank model release is then
"announced". The same holds for `job["groups"]` (per-group histograms per bank).
Suggested fix: the spec carries the extra releases (bank_alone, groups) as fields the rules can refuse
(e.g. a rule flag `per_bank_releases = false`, default false) and the CLI summary shows them; `check_spec`
refuses a job description carrying any key it does not know or compare.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _deploy_federation import ThreadFederation  # noqa: E402

from sampan.deploy.config import load_party_config  # noqa: E402
from sampan.deploy.consent import JobSpec, StandingRule, job_spec  # noqa: E402
from sampan.deploy.party_agent import PartyAgent  # noqa: E402
from sampan.wire import Message  # noqa: E402

EXACT: dict[str, Any] = {"run": {"name": "exact", "workflow": "horizontal", "rounds": 2, "seed": 3},
                         "training": {"learning_rate": 0.1, "epochs": 1},
                         "deploy": {"dataset": "loans", "submitted_by": "ops"}}


@pytest.mark.xfail(strict=True, reason="R14-CONSENT3-5: job['bank_alone'] is approved by rules that never read it")
def test_a_rule_does_not_approve_an_unshown_per_bank_release(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agents = {name: PartyAgent(load_party_config(path)) for name, path in fed.files.party_configs.items()}
        names = sorted(agents)
        victim = agents[names[0]]
        rule = StandingRule(id="lr-only", party=names[0], dataset="loans", model_kinds=["logistic"])
        victim.consent.add_rule(rule.model_dump(mode="json"), "person:alice", relayed=False)
        columns = victim.consent.served_columns("loans")
        honest = job_spec(EXACT, parties=names, datasets={n: {"dataset": "loans", "columns": columns} for n in names},
                          label_holder=None, operator="ops", job_id="run-b")
        raw = honest.model_dump(mode="json")
        assert "bank_alone" not in raw["job"]
        raw["job"]["bank_alone"] = {"epochs": 50}  # each bank's own model, released per bank in clear
        spec = JobSpec.model_validate(raw)
        reply = victim.handle(Message("run-b", 0, "coordinator", names[0], "consent.request",
                                      meta={"spec": spec.model_dump(mode="json"), "decided_by": "rule:lr-only"}))
        assert reply.kind != "consent.approval", "a per-bank model release no rule reads was approved by 'lr-only'"
    finally:
        fed.coordinator.security.close()
