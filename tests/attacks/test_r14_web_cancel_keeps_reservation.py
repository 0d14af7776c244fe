"""R14-WEB-3: cancelling an approved (not yet started) job, or refusing after approving, leaves each party's
budget reservation held forever.

Claim (docs/api.md, service_jobs): the control plane keeps each party's budget honest and cancel ends a job. But
`cancel_job` only calls the gateway for a RUNNING job, and `AgentGateway` has no way to release a reservation: the
epsilon the agents reserved at approval stays "reserved" in their books. An analyst can thus drain a bank's
lifetime budget by cancelling approved jobs (each cancelled job keeps its hold), and the bank cannot get it back."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _web_plane import HORIZONTAL, consortium_with_banks, job_body, make_world  # noqa: E402


def test_cancelling_an_approved_job_gives_its_reservation_back(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    cid, operators = consortium_with_banks(world)
    admin = world.client(world.admin)
    operator = world.client(operators["bank_a"])
    config = {**HORIZONTAL, "privacy": {"epsilon": 4.0, "delta": 1e-5, "dp3": {"clip": 1.0}}}
    for name in ("first", "second"):
        job = admin.post(f"/api/v1/consortia/{cid}/jobs", json=job_body(name, config, bank_a="sme_loans")).json()
        assert operator.post(f"/api/v1/jobs/{job['id']}/approvals/bank_a", json={"approve": True}).status_code == 200
        assert admin.post(f"/api/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"

    status = world.gateway._party("bank_a").book.status("sme_loans")  # the agent's authoritative book
    mirror = operator.get("/api/v1/parties/bank_a/budgets").json()[0]
    assert status["reserved_epsilon"] == 0.0, f"cancelled jobs still hold epsilon {status['reserved_epsilon']}"
    assert mirror["remaining_epsilon"] == pytest.approx(10.0)
    # the bank's next job (epsilon 4) must be approvable: nothing was spent
    third = admin.post(f"/api/v1/consortia/{cid}/jobs", json=job_body("third", config, bank_a="sme_loans")).json()
    assert operator.post(f"/api/v1/jobs/{third['id']}/approvals/bank_a", json={"approve": True}).status_code == 200


def test_refusing_after_approving_gives_the_reservation_back(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    cid, operators = consortium_with_banks(world)
    admin = world.client(world.admin)
    operator = world.client(operators["bank_a"])
    config = {**HORIZONTAL, "privacy": {"epsilon": 6.0, "delta": 1e-5, "dp3": {"clip": 1.0}}}
    first = admin.post(f"/api/v1/consortia/{cid}/jobs", json=job_body("first", config, bank_a="sme_loans")).json()
    second = admin.post(f"/api/v1/consortia/{cid}/jobs", json=job_body("second", config, bank_a="sme_loans")).json()
    assert operator.post(f"/api/v1/jobs/{first['id']}/approvals/bank_a", json={"approve": True}).status_code == 200
    refused = operator.post(f"/api/v1/jobs/{first['id']}/approvals/bank_a",
                            json={"approve": False, "reason": "changed our mind"})
    assert refused.status_code == 200 and refused.json()["status"] == "refused"
    # the operator withdrew consent to `first`: its 6 epsilon must be free for `second`
    answer = operator.post(f"/api/v1/jobs/{second['id']}/approvals/bank_a", json={"approve": True})
    assert answer.status_code == 200, answer.text
