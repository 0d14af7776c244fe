"""R14-CONSENT2-5: two job ids that differ only in characters outside [A-Za-z0-9_.-] ("run_a", "run/a") share
one per-run ledger file (<state_dir>/consent/runs/run_a.ledger.json). The two runs overwrite each other's
ledger; after an agent restart the run reloads its partner's, smaller, ledger and spends past its reservation
while the book (charged the run ledger's running total, a no-op when not above the recorded one) never notices.

Claim (run_budget.py): "in a per-run ledger whose budget IS the reservation, persisted under
<state_dir>/consent/runs/ (a restarted agent carries on from it)"; owner_budget.py: "a job resumed after a
crash never ... charges twice" and the book is never smaller than the truth. `JobReservation` names the file
`re.sub(r"[^A-Za-z0-9_.-]", "_", job_id)`, which is not injective; job ids are the coordinator's choice.
Fixed: the run ledger file is named by sha256(job id) and stores the job id (checked on load); a reloaded
ledger behind the book's recorded spend is refused (the run is not resumed).
Suggested fix: name the file by sha256(job id) as `RoundGate` and `ConsentStore` do (and check the loaded ledger's
job id), or keep the run's spent total in the book itself and never let `admit` go below it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _consent_grant import admit, consent_federation, gather_approvals, loans_spec  # noqa: E402

from sampan.deploy.config import load_party_config  # noqa: E402
from sampan.deploy.party_agent import PartyAgent  # noqa: E402
from sampan.privacy.ledger import PrivacyEvent  # noqa: E402
from sampan.privacy.party_policy import PolicyRefused  # noqa: E402

DP: dict[str, Any] = {"run": {"name": "dp", "workflow": "horizontal", "rounds": 2, "seed": 3},
                      "training": {"learning_rate": 0.1, "epochs": 1}, "privacy": {"epsilon": 1.0, "delta": 1e-5},
                      "deploy": {"dataset": "loans", "submitted_by": "ops"}}


def test_a_run_never_spends_past_its_reservation_after_a_restart(tmp_path: Path) -> None:
    with consent_federation(tmp_path) as (fed, agents, names):
        me = names[0]
        columns = agents[me].consent.served_columns("loans")
        specs = {job: loans_spec(DP, names, columns, job) for job in ("run_a", "run/a")}
        approvals: dict[str, list[Any]] = {}
        for job, spec in specs.items():
            approvals[job], refused = gather_approvals(agents, names, spec)
            assert refused is None, refused.meta

        def laplace(eps: float) -> list[PrivacyEvent]:
            return [PrivacyEvent(party=me, level="DP1", mechanism="laplace", epsilon=eps)]

        # what deploy.open_run builds for each run's budget
        a, b = (admit(agents[me], specs[job], approvals[job]) for job in ("run_a", "run/a"))
        a.admit(laplace(0.9))  # run_a spends 0.9 of its 1.0
        b.admit(laplace(0.1))  # run/a spends 0.1: its ledger overwrites run_a's file
        restarted = PartyAgent(load_party_config(fed.files.party_configs[me]))  # the agent restarts
        again = admit(restarted, specs["run_a"], approvals["run_a"])  # run_a resumes, reloading "its" ledger
        with pytest.raises(PolicyRefused):  # 0.9 + 0.8 > the 1.0 reserved: must be refused
            again.admit(laplace(0.8))
