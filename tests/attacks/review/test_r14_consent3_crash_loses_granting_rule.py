"""R14-CONSENT3-4: a crash between `save_approval` and `set_job_state` in `ConsentDesk.decide` leaves an approval
with no job record; the idempotent re-decision (`existing is not None: return existing`) never writes the record,
so the approval is bound neither to its granting rule nor (in the record) to its spec: removing the rule that
granted it no longer voids it, and `deploy.open_run` treats it as a person's decision (rule None).

Claim (agent_consent.py, review R14-CONSENT2-3/4): "the job id is bound to this spec, and the approval to the rule
that granted it"; "removing a rule voids its unopened approvals". A coordinator that sees a party time out on
`consent.request` (a crash, a restart) simply re-sends it; the party answers with its stored approval, and the
rule's later withdrawal does not stop the job.
Suggested fix: write the job record (state "approved", spec hash, rule) BEFORE the approval is saved (write-ahead;
`_one_spec_per_job` and `_admit_run` already read it), or have the idempotent path repair a missing record from
the approval (store the granting rule id inside the stored approval's record).
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

EXACT: dict[str, Any] = {"run": {"name": "exact", "workflow": "horizontal", "rounds": 2, "seed": 3},
                         "training": {"learning_rate": 0.1, "epochs": 1},
                         "deploy": {"dataset": "loans", "submitted_by": "ops"}}


@pytest.mark.xfail(strict=True, reason="R14-CONSENT3-4: a crash before set_job_state unbinds the granting rule")
def test_removed_rule_voids_an_approval_re_sent_after_a_crash(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        configs = {name: load_party_config(path) for name, path in fed.files.party_configs.items()}
        agents = {name: PartyAgent(config) for name, config in configs.items()}
        names = sorted(agents)
        victim = agents[names[0]]
        rule = StandingRule(id="r", party=names[0], dataset="loans")
        victim.consent.add_rule(rule.model_dump(mode="json"), "person:alice", relayed=False)
        columns = victim.consent.served_columns("loans")
        spec = job_spec(EXACT, parties=names, datasets={n: {"dataset": "loans", "columns": columns} for n in names},
                        label_holder=None, operator="ops", job_id="run-c")
        request = {"spec": spec.model_dump(mode="json"), "decided_by": "operator:ops"}

        def crash(*args: Any, **kwargs: Any) -> None:  # the process dies right after the approval was saved
            raise SystemExit("crash")

        victim.consent.records.set_job_state = crash  # type: ignore[method-assign]
        with pytest.raises(SystemExit):
            victim.consent.decide(spec, "operator:ops", relayed=True)
        agents[names[0]] = victim = PartyAgent(configs[names[0]])  # restarted; the coordinator re-sends
        approvals = []
        for name in names:
            reply = agents[name].handle(Message("run-c", 0, "coordinator", name, "consent.request", meta=request))
            assert reply.kind == "consent.approval", reply.meta
            approvals.append(reply.meta["approval"])
        assert victim.consent.remove_rule("r", "person:alice", relayed=False)  # the party withdraws its rule
        opened = victim.handle(Message("run-c", 0, "coordinator", names[0], "deploy.open_run", meta={
            "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": spec.job,
            "spec": spec.model_dump(mode="json"), "approvals": approvals}))
        assert opened.is_error, "the job opened although the rule that approved it was withdrawn"
    finally:
        fed.coordinator.security.close()
