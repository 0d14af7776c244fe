"""R14-WEB-1: an account signed in with its one-time password acts before choosing its own password.

Claim (service_consortia, auth.create_user, control_plane docstrings): a one-time password "must be changed at
first sign-in". Attack: the invited operator's one-time password (shown once in the console, so it sits in an
e-mail or a chat log) signs in and, without changing it, mints a 30-day API token and approves a job."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _web_plane import BANKS, job_body, make_world  # noqa: E402


def test_a_one_time_password_session_can_only_change_its_password(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    cid = int(world.plane.create_consortium(world.admin, "c")["id"])
    invitations = {b: world.plane.invite_member(world.admin, cid, b) for b in BANKS}
    for bank, inv in invitations.items():
        op = world.plane.accounts.authenticate(inv["operator_username"], inv["one_time_password"])
        world.plane.register_dataset(op, cid, bank, "sme_loans")
    job = world.client(world.admin).post(f"/api/v1/consortia/{cid}/jobs", json=job_body()).json()

    browser = world.client()
    inv = invitations["bank_a"]
    login = browser.post("/api/v1/auth/login", json={"username": inv["operator_username"],
                                                     "password": inv["one_time_password"]})
    assert login.status_code == 200 and login.json()["user"]["must_change_password"] is True
    csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
    minted = browser.post("/api/v1/me/tokens", json={"label": "keep", "days": 30}, headers=csrf)
    approved = browser.post(f"/api/v1/jobs/{job['id']}/approvals/bank_a", json={"approve": True}, headers=csrf)
    assert minted.status_code == 403, "a token minted on a one-time password"
    assert approved.status_code == 403, "an approval decided on a one-time password"
    assert world.plane.job(world.admin, job["id"])["approvals"]["bank_a"] == "pending"
