"""R14-WEB-9: an invitation refused for its operator user name leaves the organisation a member with no operator.

Claim (COMMON rules; service_consortia docstring): "nothing half-written after a failure (DB transactions)";
inviting an organisation makes its operator account. `invite_member` commits the member row in one transaction
and then creates the account in another: when the user name is taken (409 "user 'admin' exists") the member row
stays, no operator account exists, and inviting again is refused as "already a member"."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _web_plane import make_world  # noqa: E402


def test_a_refused_invitation_adds_nothing(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    admin = world.client(world.admin)
    cid = admin.post("/api/v1/consortia", json={"name": "c"}).json()["id"]
    refused = admin.post(f"/api/v1/consortia/{cid}/members", json={"organisation": "bank_q",
                                                                   "operator_username": "admin"})
    assert refused.status_code == 409
    assert admin.get(f"/api/v1/consortia/{cid}").json()["members"] == [], "half-written member"
    retried = admin.post(f"/api/v1/consortia/{cid}/members", json={"organisation": "bank_q"})
    assert retried.status_code == 201 and retried.json()["one_time_password"]
