"""Attacks on the control plane through its HTTP API: IDOR across organisations, CSRF without the token, a
replayed TOTP code, an expired session, a disabled user's token, a tampered or voided approval, and an agent
endpoint called without (or with the wrong) client certificate. Each attempt fails and changes nothing."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pyotp
import pytest
from _web_plane import BANKS, HORIZONTAL, World, consortium_with_banks, first_sign_in, make_world
from sqlalchemy import select, update

from sampan.crypto.simulated_ca import SimulatedCA
from sampan.web import db
from sampan.web.app import AppSettings, create_app


@pytest.fixture()
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def _job(world: World, cid: int) -> dict[str, Any]:
    return world.plane.create_job(world.admin, cid, "j", HORIZONTAL, {b: "sme_loans" for b in BANKS})


def test_an_operator_cannot_act_or_read_for_another_organisation(world: World) -> None:
    cid, operators = consortium_with_banks(world)
    job = _job(world, cid)
    rule = world.plane.add_rule(operators["bank_a"], "bank_a", {"id": "lr-only", "max_epsilon": 1.0})
    mallory = world.client(operators["bank_b"])
    assert mallory.post(f"/api/v1/jobs/{job['id']}/approvals/bank_a", json={"approve": True}).status_code == 403
    assert mallory.post(f"/api/v1/jobs/{job['id']}/approvals/bank_a",
                        json={"approve": False, "reason": "sabotage"}).status_code == 403
    assert world.plane.job(world.admin, job["id"])["approvals"]["bank_a"] == "pending"
    assert world.gateway._party("bank_a").book.entry(job["spec"]["job_id"]) is None  # no reservation made
    for path in ("inbox", "budgets", "catalogue", "rules"):
        assert mallory.get(f"/api/v1/parties/bank_a/{path}").status_code == 403, path
    assert mallory.post("/api/v1/parties/bank_a/rules", json={"rule": {"id": "anything"}}).status_code == 403
    assert mallory.post(f"/api/v1/consortia/{cid}/datasets",
                        json={"party": "bank_a", "name": "sme_loans"}).status_code == 403
    # its own party's path with bank_a's rule id: not its rule, so nothing is removed
    assert mallory.delete(f"/api/v1/parties/bank_b/rules/{rule['id']}").status_code == 404
    assert world.plane.rules(operators["bank_a"], "bank_a")[0]["active"] is True
    # a partner's budget is not in the dataset listing either
    listed = {d["party"]: d["budget"] for d in mallory.get(f"/api/v1/consortia/{cid}/datasets").json()}
    assert listed["bank_a"] is None and listed["bank_b"] is not None


def test_an_operator_outside_a_consortium_sees_none_of_it(world: World) -> None:
    cid, _ = consortium_with_banks(world)
    job = _job(world, cid)
    other = world.plane.create_consortium(world.admin, "another consortium")
    outsider = world.plane.invite_member(world.admin, other["id"], "bank_z")
    z = first_sign_in(world.plane.accounts, outsider["operator_username"], outsider["one_time_password"])
    client = world.client(z)
    assert [c["id"] for c in client.get("/api/v1/consortia").json()] == [other["id"]]
    for path in (f"/api/v1/consortia/{cid}", f"/api/v1/consortia/{cid}/jobs", f"/api/v1/consortia/{cid}/datasets",
                 f"/api/v1/jobs/{job['id']}", f"/api/v1/jobs/{job['id']}/approvals"):
        answer = client.get(path)
        assert answer.status_code == 404, path  # as if absent: not even its existence
    assert client.post(f"/api/v1/jobs/{job['id']}/approvals/bank_z", json={"approve": True}).status_code == 404


def test_a_cookie_request_without_the_csrf_token_changes_nothing(world: World) -> None:
    victim = world.client()
    token = victim.post("/api/v1/auth/login", json={"username": "admin",
                                                    "password": world.admin_password}).json()["csrf_token"]
    other = world.client()
    other_token = other.post("/api/v1/auth/login", json={"username": "admin",
                                                         "password": world.admin_password}).json()["csrf_token"]
    assert other_token != token
    for headers in ({}, {"X-CSRF-Token": ""}, {"X-CSRF-Token": other_token}, {"X-CSRF-Token": token[:-1] + "x"}):
        answer = victim.post("/api/v1/consortia", json={"name": "forged"}, headers=headers)
        assert answer.status_code == 403 and answer.json()["field"] == "X-CSRF-Token"
    assert world.plane.consortia(world.admin) == []
    assert victim.post("/api/v1/consortia", json={"name": "real"}, headers={"X-CSRF-Token": token}).status_code == 201


def test_a_replayed_totp_code_does_not_sign_in(world: World) -> None:
    ana = world.user("ana", "analyst")
    secret, _ = world.plane.accounts.enrol_totp(ana)
    world.plane.accounts.confirm_totp(ana, pyotp.TOTP(secret).at(world.clock()))
    world.clock.advance(seconds=30)
    code = pyotp.TOTP(secret).at(world.clock())
    body = {"username": "ana", "password": "a long password!", "totp": code}
    assert world.client().post("/api/v1/auth/login", json=body).status_code == 200
    replay = world.client().post("/api/v1/auth/login", json=body)  # the observed code, within its 30 s
    assert replay.status_code == 401 and "sampan_session" not in replay.cookies


def test_an_expired_session_is_refused(world: World) -> None:
    client = world.client()
    client.post("/api/v1/auth/login", json={"username": "admin", "password": world.admin_password})
    assert client.get("/api/v1/me").status_code == 200
    world.clock.advance(minutes=31)
    assert client.get("/api/v1/me").status_code == 401


def test_a_disabled_users_token_and_session_stop_at_once(world: World) -> None:
    ana = world.user("ana", "analyst")
    client = world.client(ana)
    browser = world.client()
    browser.post("/api/v1/auth/login", json={"username": "ana", "password": "a long password!"})
    assert client.get("/api/v1/me").status_code == 200 and browser.get("/api/v1/me").status_code == 200
    world.plane.set_user_disabled(world.admin, ana.user_id, True)
    assert client.get("/api/v1/me").status_code == 401
    assert browser.get("/api/v1/me").status_code == 401
    world.plane.set_user_disabled(world.admin, ana.user_id, False)
    assert client.get("/api/v1/me").status_code == 401  # revoked, not merely suspended
    assert world.client().post("/api/v1/auth/login", json={"username": "ana", "password": "a long password!"}
                               ).status_code == 200


def test_a_tampered_or_voided_approval_cannot_start_a_job(world: World) -> None:
    cid, operators = consortium_with_banks(world)
    job = _job(world, cid)
    for bank, op in operators.items():
        world.plane.decide(op, job["id"], bank, True)
    # someone with database access swaps bank_c's signature for bank_b's: the agents refuse at start
    with world.plane.engine.begin() as c:
        rows = {r.party: r for r in c.execute(select(db.approvals).where(db.approvals.c.job_id == job["id"]))}
        forged = {**rows["bank_c"].approval, "signature": rows["bank_b"].approval["signature"]}
        c.execute(update(db.approvals).where(db.approvals.c.id == rows["bank_c"].id).values(approval=forged))
    answer = world.client(world.admin).post(f"/api/v1/jobs/{job['id']}/start")
    assert answer.status_code == 409 and "bank_c" in answer.json()["error"]
    assert world.gateway.started == []
    # an edit voids every approval: the job cannot start on the old ones
    world.plane.edit_job(world.admin, job["id"], config={**HORIZONTAL, "run": {**HORIZONTAL["run"], "rounds": 4}})
    assert world.client(world.admin).post(f"/api/v1/jobs/{job['id']}/start").status_code == 409
    assert world.gateway.started == []


class _WithClientCertificate:
    """What a TLS server puts in the ASGI scope after a verified handshake (the client's certificate)."""

    def __init__(self, app: Any, pem: bytes | None) -> None:
        self.app, self.pem = app, pem

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.pem is not None:
            scope = {**scope, "extensions": {**(scope.get("extensions") or {}),
                                             "tls": {"client_cert_chain": [self.pem.decode()]}}}
        await self.app(scope, receive, send)


def test_agent_endpoints_need_the_partys_own_certificate(world: World) -> None:
    from fastapi.testclient import TestClient

    cid, _ = consortium_with_banks(world)
    job = _job(world, cid)
    app = create_app(world.plane, AppSettings(secure_cookies=False, console=False,
                                              agent_verifier=world.gateway.verifier))
    url = f"/api/v1/agent/jobs/{job['id']}"
    own = world.gateway.identity("bank_a").certificate_pem
    answer = TestClient(_WithClientCertificate(app, own)).get(url)
    assert answer.status_code == 200 and answer.json()["spec_hash"] == job["spec_hash"]
    assert TestClient(_WithClientCertificate(app, None)).get(url).status_code == 403
    _, token = world.plane.accounts.issue_token(world.admin)
    assert TestClient(app).get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 403
    outsider = world.gateway.ca.issue("bank_z").certificate_pem  # a consortium member, not a party of the job
    assert TestClient(_WithClientCertificate(app, outsider)).get(url).status_code == 403
    impostor = SimulatedCA("someone else's CA").issue("bank_a").certificate_pem  # right name, wrong CA
    assert TestClient(_WithClientCertificate(app, impostor)).get(url).status_code == 403
    assert TestClient(_WithClientCertificate(app, own)).get("/api/v1/agent/jobs/999").status_code == 403


def test_a_cross_site_form_cannot_sign_a_victim_in(world: World) -> None:
    """Login CSRF: an HTML form can post text/plain or form-encoded bodies only; the API takes JSON only."""
    import json

    body = json.dumps({"username": "admin", "password": world.admin_password})
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        answer = world.client().post("/api/v1/auth/login", content=body, headers={"Content-Type": content_type})
        assert answer.status_code == 422 and "sampan_session" not in answer.cookies, content_type


def test_a_rule_added_in_the_console_reaches_only_an_agent_that_accepts_relayed_decisions(world: World) -> None:
    _, operators = consortium_with_banks(world)
    bank_a = world.client(operators["bank_a"])
    added = bank_a.post("/api/v1/parties/bank_a/rules", json={"rule": {"id": "lr", "max_epsilon": 1.0}})
    assert added.status_code == 201 and added.json()["rule"]["party"] == "bank_a"
    assert [r["id"] for r in world.gateway.rules_of("bank_a")] == ["lr"]
    assert world.gateway.rules_of("bank_a")[0]["decided_by"] == "person:bank_a-operator"
    world.gateway.set_console_decisions("bank_b", False)
    refused = world.client(operators["bank_b"]).post("/api/v1/parties/bank_b/rules", json={"rule": {"id": "lr"}})
    assert refused.status_code == 409 and "console_decisions" in refused.json()["error"]
    assert world.gateway.rules_of("bank_b") == [] and world.plane.rules(operators["bank_b"], "bank_b") == []
    # a rule that names another party is still bank_a's: the path decides, not the body
    forged = bank_a.post("/api/v1/parties/bank_a/rules", json={"rule": {"id": "x", "party": "bank_b"}})
    assert forged.status_code == 201 and forged.json()["rule"]["party"] == "bank_a"
