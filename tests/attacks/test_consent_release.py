"""R14-WEB-3 at the party agent: `consent.release` withdraws an approval of a job that never opened (the approval
is voided, the whole reservation returns, audited), and is refused once the run opened there (what a run spent
stays). A released approval no longer opens a run; the job may be approved afresh (nothing was spent)."""

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

CONFIG: dict[str, Any] = {
    "run": {"name": "release", "workflow": "horizontal", "rounds": 2, "seed": 3},
    "privacy": {"epsilon": 1.0, "delta": 1e-5, "dp2": {"noise_multiplier": 1.2}},
    "deploy": {"dataset": "loans", "submitted_by": "ops"},
}


def test_release_voids_an_unstarted_approval_and_is_refused_once_the_run_opened(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agents = {name: PartyAgent(load_party_config(path)) for name, path in fed.files.party_configs.items()}
        names = sorted(agents)
        columns = agents[names[0]].consent.served_columns("loans")
        spec = job_spec(CONFIG, parties=names, datasets={n: {"dataset": "loans", "columns": columns} for n in names},
                        label_holder=None, operator="ops", job_id="run-r")

        def approve_all() -> list[dict[str, Any]]:
            out = []
            for name in names:
                reply = agents[name].handle(Message("run-r", 0, "coordinator", name, "consent.request",
                                                    meta={"spec": spec.model_dump(mode="json"),
                                                          "decided_by": "operator:ops"}))
                assert reply.kind == "consent.approval", reply.meta
                out.append(reply.meta["approval"])
            return out

        approvals = approve_all()
        name, victim = names[0], agents[names[0]]
        assert victim.consent.book.status("loans")["reserved_epsilon"] == 1.0
        released = victim.handle(Message("run-r", 0, "coordinator", name, "consent.release",
                                         meta={"job_id": "run-r", "decided_by": "person:alice"}))
        assert released.kind == "consent.released" and released.meta["voided"] == 1, released.meta
        assert victim.consent.book.status("loans")["reserved_epsilon"] == 0.0
        assert [e.kind for e in victim.store().events("run-r")][-1] == "consent_released"
        meta = {"workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": spec.job,
                "spec": spec.model_dump(mode="json"), "approvals": approvals}
        refused = victim.handle(Message("run-r", 0, "coordinator", name, "deploy.open_run", meta=meta))
        assert refused.is_error and "holds no approval" in str(refused.meta.get("error")), refused.meta

        approvals = approve_all()  # approved afresh: a fresh signature and reservation, then it runs
        assert victim.consent.book.status("loans")["reserved_epsilon"] == 1.0
        opened = victim.handle(Message("run-r", 0, "coordinator", name, "deploy.open_run",
                                       meta={**meta, "approvals": approvals}))
        assert not opened.is_error, opened.meta
        late = victim.handle(Message("run-r", 0, "coordinator", name, "consent.release", meta={"job_id": "run-r"}))
        assert late.is_error and "cannot be withdrawn" in str(late.meta.get("error")), late.meta
        assert victim.consent.book.status("loans")["reserved_epsilon"] == 1.0
    finally:
        fed.coordinator.security.close()


def test_the_control_plane_releases_through_the_coordinator_over_grpc(tmp_path: Path) -> None:
    """`CoordinatorGateway.release` -> `Coordinator.release_approval` -> `consent.release` at the real agent."""
    from sampan.deploy.consent import ConsentRefused
    from sampan.web.gateway_coordinator import CoordinatorGateway

    fed = ThreadFederation(tmp_path, n=300)
    try:
        names = sorted(fed.agents)
        columns = fed.agents[names[0]].consent.served_columns("loans")
        spec = job_spec(CONFIG, parties=names, datasets={n: {"dataset": "loans", "columns": columns} for n in names},
                        label_holder=None, operator="ops", job_id="run-g")
        gateway = CoordinatorGateway(fed.coordinator)
        party = names[0]
        book = fed.agents[party].consent.book
        gateway.request_approval(party, spec, "operator:ops")
        assert book.status("loans")["reserved_epsilon"] == 1.0
        gateway.release(party, spec.job_id)
        assert book.status("loans")["reserved_epsilon"] == 0.0
        assert fed.agents[party].consent.records.approvals() == []
        try:
            gateway.release("nobody", spec.job_id)
        except ConsentRefused as exc:
            assert "not a party member" in exc.reason
        else:
            raise AssertionError("a release to an unknown party must be refused")
    finally:
        fed.close()
