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

from _consent_grant import consent_federation, gather_approvals, loans_spec, open_run  # noqa: E402

from sampan.wire import Message  # noqa: E402

EXACT: dict[str, Any] = {"run": {"name": "exact", "workflow": "horizontal", "rounds": 2, "seed": 3},
                         "deploy": {"dataset": "loans", "submitted_by": "ops"}}


def test_a_closed_approved_run_is_not_opened_again(tmp_path: Path) -> None:
    with consent_federation(tmp_path) as (_, agents, names):
        spec = loans_spec(EXACT, names, agents[names[0]].consent.served_columns("loans"), "run-x")
        approvals, refused = gather_approvals(agents, names, spec)
        assert refused is None, refused.meta
        victim, name = agents[names[0]], names[0]
        admitted = 0
        for _ in range(3):
            opened = open_run(victim, spec, approvals)
            if not opened.is_error:
                admitted += 1
                described = victim.handle(Message("run-x", 1, "coordinator", name, "describe", meta={}))
                assert described.kind == "describe" and "n_train" in described.meta  # exact outputs again
            victim.handle(Message("run-x", 2, "coordinator", name, "deploy.close_run"))
        accepted = [e for e in victim.store().events("run-x") if e.kind == "job_accepted"]
        assert admitted == 1 and len(accepted) == 1, f"the approved run was admitted {admitted} times"
