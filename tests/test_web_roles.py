"""Every /api/v1 endpoint refuses a caller without credentials (401) and every role the permission table does not
list (403); an operator of one bank can never act or read for another bank (org scoping)."""

from __future__ import annotations

from typing import Any

import pytest
from _web_plane import BANKS, HORIZONTAL, World, consortium_with_banks, make_world

from sampan.web.roles import PARTY_SCOPED, PERMISSIONS, ROLES, Principal

PUBLIC = {("GET", "/api/v1/health"), ("POST", "/api/v1/auth/login")}
AGENT = {("GET", "/api/v1/agent/jobs/{job_id}")}  # mTLS, tested in tests/attacks/test_web_idor.py

# (method, path) -> the action the route's service call requires ("self.read": any signed-in person)
ROUTE_ACTIONS: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/auth/logout"): "self.read",
    ("GET", "/api/v1/me"): "self.read",
    ("POST", "/api/v1/me/password"): "self.read",
    ("POST", "/api/v1/me/totp"): "self.read",
    ("POST", "/api/v1/me/totp/confirm"): "self.read",
    ("GET", "/api/v1/me/tokens"): "self.read",
    ("POST", "/api/v1/me/tokens"): "self.read",
    ("DELETE", "/api/v1/me/tokens/{token_id}"): "self.read",
    ("GET", "/api/v1/users"): "users.read",
    ("POST", "/api/v1/users"): "users.manage",
    ("PUT", "/api/v1/users/{user_id}/disabled"): "users.manage",
    ("GET", "/api/v1/consortia"): "consortium.read",
    ("POST", "/api/v1/consortia"): "consortium.create",
    ("GET", "/api/v1/consortia/{consortium_id}"): "consortium.read",
    ("POST", "/api/v1/consortia/{consortium_id}/members"): "member.invite",
    ("GET", "/api/v1/parties"): "parties.read",
    ("GET", "/api/v1/parties/{party}/catalogue"): "catalogue.read",
    ("GET", "/api/v1/parties/{party}/budgets"): "budget.read",
    ("GET", "/api/v1/parties/{party}/inbox"): "inbox.read",
    ("GET", "/api/v1/parties/{party}/rules"): "rule.read",
    ("POST", "/api/v1/parties/{party}/rules"): "rule.manage",
    ("DELETE", "/api/v1/parties/{party}/rules/{rule_id}"): "rule.manage",
    ("GET", "/api/v1/consortia/{consortium_id}/datasets"): "dataset.read",
    ("POST", "/api/v1/consortia/{consortium_id}/datasets"): "dataset.register",
    ("GET", "/api/v1/datasets/{dataset_id}"): "dataset.read",
    ("GET", "/api/v1/consortia/{consortium_id}/jobs"): "job.read",
    ("POST", "/api/v1/consortia/{consortium_id}/jobs"): "job.create",
    ("GET", "/api/v1/jobs/{job_id}"): "job.read",
    ("PATCH", "/api/v1/jobs/{job_id}"): "job.edit",
    ("POST", "/api/v1/jobs/{job_id}/submit"): "job.edit",
    ("GET", "/api/v1/jobs/{job_id}/approvals"): "job.read",
    ("POST", "/api/v1/jobs/{job_id}/approvals/{party}"): "approval.decide",
    ("POST", "/api/v1/jobs/{job_id}/start"): "job.start",
    ("POST", "/api/v1/jobs/{job_id}/cancel"): "job.cancel",
    ("GET", "/api/v1/runs"): "run.read",
    ("GET", "/api/v1/runs/compare"): "run.read",
    ("GET", "/api/v1/runs/{run_id}"): "run.read",
    ("GET", "/api/v1/runs/{run_id}/files"): "report.read",
    ("GET", "/api/v1/models"): "model.read",
    ("GET", "/api/v1/models/{name}/{version}"): "model.read",
    ("POST", "/api/v1/models/{name}/{version}/stage"): "model.stage",
    ("GET", "/api/v1/models/{name}/{version}/export"): "model.export",
    ("GET", "/api/v1/audit"): "audit.read",
    ("GET", "/api/v1/audit/verify"): "audit.read",
}

BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/me/password"): {"old_password": "x", "new_password": "another long password"},
    ("POST", "/api/v1/me/totp/confirm"): {"code": "123456"},
    ("POST", "/api/v1/me/tokens"): {"label": "t"},
    ("POST", "/api/v1/users"): {"username": "mallory", "role": "consortium_admin"},
    ("PUT", "/api/v1/users/{user_id}/disabled"): {"disabled": True},
    ("POST", "/api/v1/consortia"): {"name": "another"},
    ("POST", "/api/v1/consortia/{consortium_id}/members"): {"organisation": "bank_z"},
    ("POST", "/api/v1/parties/{party}/rules"): {"rule": {"id": "r1", "max_epsilon": 1.0}},
    ("POST", "/api/v1/consortia/{consortium_id}/datasets"): {"party": "bank_a", "name": "sme_loans"},
    ("POST", "/api/v1/consortia/{consortium_id}/jobs"): {"name": "j", "config": HORIZONTAL,
                                                          "datasets": {b: "sme_loans" for b in BANKS}},
    ("PATCH", "/api/v1/jobs/{job_id}"): {"name": "renamed"},
    ("POST", "/api/v1/jobs/{job_id}/approvals/{party}"): {"approve": True},
    ("POST", "/api/v1/models/{name}/{version}/stage"): {"stage": "approved"},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, dict[str, Any]]:
    world = make_world(tmp_path_factory.mktemp("roles"))
    cid, operators = consortium_with_banks(world)
    job = world.plane.create_job(world.admin, cid, "j", HORIZONTAL, {b: "sme_loans" for b in BANKS})
    for bank, op in operators.items():
        world.plane.decide(op, job["id"], bank, True)
    run_id = world.plane.start_job(world.admin, job["id"])["run_id"]
    job2 = world.plane.create_job(world.admin, cid, "j2", HORIZONTAL, {b: "sme_loans" for b in BANKS})
    model = world.plane.models(world.admin)[0]
    rule = world.plane.add_rule(operators["bank_a"], "bank_a", {"id": "r0"})
    principals = {"consortium_admin": world.admin, "party_operator": operators["bank_a"],
                  "analyst": world.user("ana", "analyst"), "auditor": world.user("aud", "auditor")}
    params = {"consortium_id": cid, "job_id": job2["id"], "party": "bank_a", "rule_id": rule["id"], "token_id": 1,
              "user_id": principals["analyst"].user_id, "dataset_id": 1, "run_id": run_id, "name": model["name"],
              "version": model["version"]}
    return world, {"principals": principals, "params": params, "operators": operators, "run_id": run_id}


def _api_routes(world: World) -> list[tuple[str, str]]:
    """Every API operation, as the OpenAPI document (generated from the app's routes) lists them."""
    paths = world.app.openapi()["paths"]
    return sorted((method.upper(), path) for path, ops in paths.items() for method in ops)


def _call(world: World, who: Principal | None, method: str, path: str, params: dict[str, Any],
          run_id: str) -> Any:
    client = world.client(who)
    url = path.format(**params)
    query = [("ids", run_id), ("ids", run_id)] if path.endswith("/compare") else None
    return client.request(method, url, json=BODIES.get((method, path)), params=query)


def test_every_route_is_in_the_table(world: tuple[World, dict[str, Any]]) -> None:
    routes = set(_api_routes(world[0]))
    assert routes == set(ROUTE_ACTIONS) | PUBLIC | AGENT, routes ^ (set(ROUTE_ACTIONS) | PUBLIC | AGENT)
    assert set(ROUTE_ACTIONS.values()) <= set(PERMISSIONS)


def test_every_route_refuses_a_caller_without_credentials(world: tuple[World, dict[str, Any]]) -> None:
    w, ctx = world
    for method, path in ROUTE_ACTIONS:
        answer = _call(w, None, method, path, ctx["params"], ctx["run_id"])
        assert answer.status_code == 401, (method, path, answer.status_code, answer.text)
        assert set(answer.json()) == {"error", "field"}


def test_every_route_refuses_every_role_the_table_does_not_list(world: tuple[World, dict[str, Any]]) -> None:
    w, ctx = world
    checked = 0
    for (method, path), action in ROUTE_ACTIONS.items():
        for role in ROLES:
            if role in PERMISSIONS[action]:
                continue
            answer = _call(w, ctx["principals"][role], method, path, ctx["params"], ctx["run_id"])
            assert answer.status_code == 403, (role, method, path, answer.status_code, answer.text)
            checked += 1
    assert checked > 40


def test_an_operator_of_bank_b_can_never_act_for_bank_a(world: tuple[World, dict[str, Any]]) -> None:
    w, ctx = world
    bank_b = ctx["operators"]["bank_b"]
    scoped = [(m, p) for (m, p), action in ROUTE_ACTIONS.items() if action in PARTY_SCOPED and "{party}" in p]
    assert len(scoped) >= 7
    for method, path in scoped:
        answer = _call(w, bank_b, method, path, ctx["params"], ctx["run_id"])  # party = bank_a
        assert answer.status_code == 403, (method, path, answer.text)
    registered = w.client(bank_b).post(f"/api/v1/consortia/{ctx['params']['consortium_id']}/datasets",
                                       json={"party": "bank_a", "name": "sme_loans"})
    assert registered.status_code == 403
    # what the operator may do, it may do for its own bank
    assert w.client(bank_b).get("/api/v1/parties/bank_b/inbox").status_code == 200


def test_allowed_roles_are_not_refused(world: tuple[World, dict[str, Any]]) -> None:
    """The other half of the table: each read route answers 200 for a role it lists (no over-refusal)."""
    w, ctx = world
    for (method, path), action in ROUTE_ACTIONS.items():
        if method != "GET":
            continue
        for role in sorted(PERMISSIONS[action]):
            answer = _call(w, ctx["principals"][role], method, path, ctx["params"], ctx["run_id"])
            assert answer.status_code == 200, (role, method, path, answer.status_code, answer.text)
