"""R14-CONSENT-7: "one approval, one run" holds for the budget only: a coordinator closes an approved exact job
and opens it again under the same run id as often as it likes; each opening is admitted and served.

Claim (agent_consent docstring, docs/deploy.md §5a): at `deploy.open_run` the agent requires "the spec's job id
to be the run id (one approval, one run: a re-run cannot reserve twice)". `deploy.close_run` settles the
reservation and drops the run's handlers, but the stored approval stays valid, so the next `deploy.open_run`
with the same spec and approvals is admitted again (`job_accepted` twice in the audit log). DP releases are then
refused (the entry is settled), but an exact job (no DP, nothing reserved) re-releases its exact outputs (counts,
model updates) in every re-opening, beyond what the party approved.
Fix: record in the party's consent store that the approved run was closed (or its entry settled) and refuse to
admit a settled job id again.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[0]))

from _deploy_federation import ThreadFederation  # noqa: E402

from sampan.deploy.config import load_party_config  # noqa: E402
from sampan.deploy.consent import job_spec  # noqa: E402
from sampan.deploy.party_agent import PartyAgent  # noqa: E402
from sampan.wire import Message  # noqa: E402

EXACT: dict[str, Any] = {"run": {"name": "exact", "workflow": "horizontal", "rounds": 2, "seed": 3},
                         "deploy": {"dataset": "loans", "submitted_by": "ops"}}


def test_a_closed_approved_run_is_not_opened_again(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agents = {name: PartyAgent(load_party_config(path)) for name, path in fed.files.party_configs.items()}
        names = sorted(agents)
        columns = agents[names[0]].consent.served_columns("loans")
        spec = job_spec(EXACT, parties=names, datasets={n: {"dataset": "loans", "columns": columns} for n in names},
                        label_holder=None, operator="ops", job_id="run-x")
        approvals = []
        for name in names:
            reply = agents[name].handle(Message("run-x", 0, "coordinator", name, "consent.request",
                                                meta={"spec": spec.model_dump(mode="json"),
                                                      "decided_by": "operator:ops"}))
            approvals.append(reply.meta["approval"])
        victim, name = agents[names[0]], names[0]
        meta = {"workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": spec.job,
                "spec": spec.model_dump(mode="json"), "approvals": approvals}
        admitted = 0
        for _ in range(3):
            opened = victim.handle(Message("run-x", 0, "coordinator", name, "deploy.open_run", meta=meta))
            if not opened.is_error:
                admitted += 1
                described = victim.handle(Message("run-x", 1, "coordinator", name, "describe", meta={}))
                assert described.kind == "describe" and "n_train" in described.meta  # exact outputs again
            victim.handle(Message("run-x", 2, "coordinator", name, "deploy.close_run"))
        accepted = [e for e in victim.store().events("run-x") if e.kind == "job_accepted"]
        assert admitted == 1 and len(accepted) == 1, f"the approved run was admitted {admitted} times"
    finally:
        fed.coordinator.security.close()
