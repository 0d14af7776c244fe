"""R14-WEB-10: an approval that completes while the job is being edited marks the edited job "approved".

Claim (service_jobs docstring): editing voids every approval, "so an approval never outlives the exact job it
covers". `decide` reads the job, asks the party's agent to sign (a network round trip, seconds on a real
deployment), then `_record` stores the approval under the spec hash it READ and recomputes the status from that
stale hash. An edit that lands during the round trip is followed by status "approved" for a job whose current spec
nobody approved: every page and the inbox say so, and the Start button shows (start itself re-checks and refuses,
so nothing runs). Fix: in `_record`, re-read the job in the same transaction and refuse (409) when its spec hash
moved; compute the status from the current hash."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _web_plane import HORIZONTAL, consortium_with_banks, job_body, make_world  # noqa: E402


def test_an_edit_during_the_last_approval_leaves_the_job_awaiting(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world(tmp_path)
    cid, operators = consortium_with_banks(world)
    admin = world.client(world.admin)
    job = admin.post(f"/api/v1/consortia/{cid}/jobs", json=job_body(bank_a="sme_loans")).json()
    sign = world.gateway.request_approval
    bigger = {**HORIZONTAL, "privacy": {"epsilon": 5.0, "delta": 1e-5, "dp3": {"clip": 1.0}}}

    def slow_agent(party: str, spec: Any, decided_by: str) -> Any:  # the analyst's edit lands mid round trip
        assert admin.patch(f"/api/v1/jobs/{job['id']}", json={"config": bigger}).status_code == 200
        return sign(party, spec, decided_by)

    monkeypatch.setattr(world.gateway, "request_approval", slow_agent)
    world.client(operators["bank_a"]).post(f"/api/v1/jobs/{job['id']}/approvals/bank_a", json={"approve": True})
    now = admin.get(f"/api/v1/jobs/{job['id']}").json()
    assert now["spec"]["privacy"]["epsilon"] == 5.0 and now["approvals"] == {"bank_a": "pending"}
    assert now["status"] == "awaiting_approval", f"status {now['status']!r} with no approval of the current spec"
