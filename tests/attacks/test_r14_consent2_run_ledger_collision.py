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

from _deploy_federation import ThreadFederation  # noqa: E402

from sampan.deploy.config import load_party_config  # noqa: E402
from sampan.deploy.consent import job_spec  # noqa: E402
from sampan.deploy.party_agent import PartyAgent  # noqa: E402
from sampan.privacy.ledger import PrivacyEvent  # noqa: E402
from sampan.privacy.party_policy import PolicyRefused  # noqa: E402
from sampan.wire import Message  # noqa: E402

DP: dict[str, Any] = {"run": {"name": "dp", "workflow": "horizontal", "rounds": 2, "seed": 3},
                      "training": {"learning_rate": 0.1, "epochs": 1}, "privacy": {"epsilon": 1.0, "delta": 1e-5},
                      "deploy": {"dataset": "loans", "submitted_by": "ops"}}



def test_a_run_never_spends_past_its_reservation_after_a_restart(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agents = {name: PartyAgent(load_party_config(path)) for name, path in fed.files.party_configs.items()}
        names = sorted(agents)
        me = names[0]
        columns = agents[me].consent.served_columns("loans")
        datasets = {n: {"dataset": "loans", "columns": columns} for n in names}
        specs = {job: job_spec(DP, parties=names, datasets=datasets, label_holder=None, operator="ops", job_id=job)
                 for job in ("run_a", "run/a")}
        approvals: dict[str, list[Any]] = {job: [] for job in specs}
        for job, spec in specs.items():
            for name in names:
                reply = agents[name].handle(Message(job, 0, "coordinator", name, "consent.request",
                                                    meta={"spec": spec.model_dump(mode="json"),
                                                          "decided_by": "operator:ops"}))
                assert reply.kind == "consent.approval", reply.meta
                approvals[job].append(reply.meta["approval"])

        def open_(agent: PartyAgent, job: str) -> Any:  # what deploy.open_run builds for the run's budget
            spec = specs[job]
            return agent.consent.admit_run(Message(job, 0, "coordinator", me, "deploy.open_run", meta={
                "spec": spec.model_dump(mode="json"), "approvals": approvals[job]}), "loans",
                {**spec.job, "workflow": "horizontal"})

        def laplace(eps: float) -> list[PrivacyEvent]:
            return [PrivacyEvent(party=me, level="DP1", mechanism="laplace", epsilon=eps)]

        a, b = open_(agents[me], "run_a"), open_(agents[me], "run/a")
        a.admit(laplace(0.9))  # run_a spends 0.9 of its 1.0
        b.admit(laplace(0.1))  # run/a spends 0.1: its ledger overwrites run_a's file
        restarted = PartyAgent(load_party_config(fed.files.party_configs[me]))  # the agent restarts
        again = open_(restarted, "run_a")  # run_a resumes, reloading "its" ledger
        with pytest.raises(PolicyRefused):  # 0.9 + 0.8 > the 1.0 reserved: must be refused
            again.admit(laplace(0.8))
    finally:
        fed.coordinator.security.close()
