"""R14-WEB-4: editing an approved job keeps its run id, so every agent keeps the FIRST spec's reservation; the
re-approved spec (asking more epsilon) is signed but cannot run, and one asking less keeps the larger hold.

Claim (service_jobs docstring): "editing a job recomputes the spec; when the hash changes, every approval of the
job is voided ... so an approval never outlives the exact job it covers", and a job "starts only when every party
it reads from approved its CURRENT spec hash". The edited spec keeps `job_id` (the run id) and T1's budget book
reserves once per job id, returning the old reservation whatever the new spec asks. The FakeGateway then signs an
approval whose `reserved` states epsilon 8 while its book holds 1 (the real agent signs the old 1 instead), and
start fails with the agents' budget refusal: every party approved the current spec, the budget has room, and the
job can never run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _web_plane import BANKS, HORIZONTAL, consortium_with_banks, job_body, make_world  # noqa: E402


def test_a_re_approved_edited_job_holds_what_its_new_spec_plans_and_starts(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    cid, operators = consortium_with_banks(world)
    admin = world.client(world.admin)
    job = admin.post(f"/api/v1/consortia/{cid}/jobs", json=job_body()).json()  # epsilon 1
    for bank in BANKS:
        assert world.client(operators[bank]).post(f"/api/v1/jobs/{job['id']}/approvals/{bank}",
                                                  json={"approve": True}).status_code == 200
    bigger = {**HORIZONTAL, "privacy": {"epsilon": 8.0, "delta": 1e-5, "dp3": {"clip": 1.0}}}
    edited = admin.patch(f"/api/v1/jobs/{job['id']}", json={"config": bigger}).json()
    assert set(edited["approvals"].values()) == {"pending"}  # voided, as claimed
    for bank in BANKS:
        assert world.client(operators[bank]).post(f"/api/v1/jobs/{job['id']}/approvals/{bank}",
                                                  json={"approve": True}).status_code == 200
    signed = {a["party"]: a["approval"]["reserved"]["epsilon"]
              for a in admin.get(f"/api/v1/jobs/{job['id']}/approvals").json()}
    held = {b: world.gateway._party(b).book.status("sme_loans")["reserved_epsilon"] for b in BANKS}
    assert held == signed == {b: 8.0 for b in BANKS}, f"signed {signed}, held {held}"
    started = admin.post(f"/api/v1/jobs/{job['id']}/start")
    assert started.status_code == 200, started.text
