"""The control plane's REST API end to end over the FakeGateway: accounts, consortium, members, datasets, jobs,
approvals bound to the spec, budgets, runs, models, audit (and the same flow on PostgreSQL)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from _web_plane import BANKS, HORIZONTAL, World, job_body, make_world


def _sign_in(world: World, username: str, password: str) -> Any:
    client = world.client()
    answer = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    return client


def _flow(world: World) -> None:
    admin = _sign_in(world, "admin", world.admin_password)  # make_world chose it after the one-time password
    assert admin.get("/api/v1/me").json()["must_change_password"] is False
    assert admin.post("/api/v1/me/password", json={"old_password": world.admin_password,
                                                   "new_password": "correct horse battery"}).status_code == 204
    cid = admin.post("/api/v1/consortia", json={"name": "HK SME", "description": "banks"}).json()["id"]
    operators: dict[str, Any] = {}
    for bank in BANKS:
        invited = admin.post(f"/api/v1/consortia/{cid}/members", json={"organisation": bank})
        assert invited.status_code == 201, invited.text
        body = invited.json()
        assert body["one_time_password"] and body["operator_username"] == f"{bank}-operator"
        operators[bank] = _sign_in(world, body["operator_username"], body["one_time_password"])
        assert operators[bank].get("/api/v1/me").json()["must_change_password"] is True
        assert operators[bank].get(f"/api/v1/parties/{bank}/catalogue").status_code == 403  # R14-WEB-1
        assert operators[bank].post("/api/v1/me/password", json={"old_password": body["one_time_password"],
                                                                 "new_password": "an operator's password"}
                                    ).status_code == 204
        catalogue = operators[bank].get(f"/api/v1/parties/{bank}/catalogue").json()
        assert catalogue[0]["name"] == "sme_loans" and "rows" in catalogue[0] and "default" in catalogue[0]["columns"]
        registered = operators[bank].post(f"/api/v1/consortia/{cid}/datasets", json={"party": bank,
                                                                                    "name": "sme_loans"})
        assert registered.status_code == 201, registered.text
        assert registered.json()["budget"]["remaining_epsilon"] == pytest.approx(10.0)
    assert admin.get(f"/api/v1/consortia/{cid}").json()["members"] == list(BANKS)

    analyst_user = world.user("ana", "analyst")
    analyst = world.client(analyst_user)
    created = analyst.post(f"/api/v1/consortia/{cid}/jobs", json=job_body())
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["status"] == "awaiting_approval" and len(job["spec_hash"]) == 64
    assert job["approvals"] == {bank: "pending" for bank in BANKS}

    inbox = operators["bank_a"].get("/api/v1/parties/bank_a/inbox").json()
    assert [item["job_id"] for item in inbox] == [job["id"]]
    item = inbox[0]
    assert item["columns"] == ["turnover", "years_trading", "late_payments", "sector", "default"]
    assert item["privacy"]["epsilon"] == 1.0 and item["rounds"] == 3 and item["partners"] == ["bank_b", "bank_c"]
    assert item["remaining_epsilon"] == pytest.approx(10.0) and item["remaining_after_epsilon"] == pytest.approx(9.0)

    # an edit (one column fewer at bank_a) after bank_a approved voids that approval
    assert operators["bank_a"].post(f"/api/v1/jobs/{job['id']}/approvals/bank_a",
                                    json={"approve": True}).json()["approvals"]["bank_a"] == "approved"
    edited = analyst.patch(f"/api/v1/jobs/{job['id']}", json={"datasets": {
        "bank_a": {"dataset": "sme_loans", "columns": ["turnover", "default"]}, "bank_b": "sme_loans",
        "bank_c": "sme_loans"}}).json()
    assert edited["spec_hash"] != job["spec_hash"] and edited["approvals"]["bank_a"] == "pending"
    assert analyst.post(f"/api/v1/jobs/{job['id']}/start").status_code == 409  # not every party approved

    for bank in BANKS:
        decided = operators[bank].post(f"/api/v1/jobs/{job['id']}/approvals/{bank}", json={"approve": True})
        assert decided.status_code == 200, decided.text
    approvals = admin.get(f"/api/v1/jobs/{job['id']}/approvals").json()
    assert {a["party"] for a in approvals} == set(BANKS)
    assert all(a["approval"]["spec_hash"] == edited["spec_hash"] and a["approval"]["signature"] for a in approvals)
    started = analyst.post(f"/api/v1/jobs/{job['id']}/start")
    assert started.status_code == 200, started.text
    run_id = started.json()["run_id"]

    view = analyst.get(f"/api/v1/runs/{run_id}").json()
    assert view["status"] == "finished" and view["round"] == 3 and len(view["rounds"]) == 3
    assert set(view["epsilon"]) == set(BANKS) and view["epsilon"]["bank_a"]["by_level"]["DP3"] == 1.0
    assert analyst.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "finished"
    assert set(analyst.get(f"/api/v1/runs/{run_id}/files").json()) == {"run_id", "report_path", "receipt_path"}
    budget = operators["bank_b"].get("/api/v1/parties/bank_b/budgets").json()[0]
    assert budget["spent_epsilon"] == pytest.approx(1.0) and budget["remaining_epsilon"] == pytest.approx(9.0)
    assert [h["event"] for h in budget["history"]][:1] == ["reserve"]

    # a second job, compared side by side with the first
    second = analyst.post(f"/api/v1/consortia/{cid}/jobs", json=job_body("sme-lr-2")).json()
    for bank in BANKS:
        operators[bank].post(f"/api/v1/jobs/{second['id']}/approvals/{bank}", json={"approve": True})
    run2 = analyst.post(f"/api/v1/jobs/{second['id']}/start").json()["run_id"]
    compared = analyst.get("/api/v1/runs/compare", params=[("ids", run_id), ("ids", run2)])
    assert compared.status_code == 200, compared.text
    assert compared.json()["run_ids"] == [run_id, run2]

    models = admin.get("/api/v1/models").json()
    assert {m["stage"] for m in models} == {"candidate"}
    name, version = models[-1]["name"], models[-1]["version"]
    promoted = admin.post(f"/api/v1/models/{name}/{version}/stage", json={"stage": "approved", "note": "ok"}).json()
    assert promoted["stage"] == "approved" and promoted["lineage"]["spec_hash"]
    assert {a["party"] for a in promoted["lineage"]["approvals"]} == set(BANKS)
    assert admin.post(f"/api/v1/models/{name}/{version}/stage", json={"stage": "candidate"}).status_code == 409
    exported = analyst.get(f"/api/v1/models/{name}/{version}/export").json()
    assert exported["format"] == "sampan-model" and exported["model"]["kind"] == "logistic"

    auditor = world.client(world.user("audrey", "auditor"))
    log = auditor.get("/api/v1/audit").json()
    kinds = [e["kind"] for e in log["entries"]]
    for kind in ("cp.consortium_created", "cp.member_invited", "cp.dataset_registered", "cp.job_created",
                 "cp.job_edited", "cp.approval_recorded", "cp.job_started", "cp.model_stage", "cp.model_exported"):
        assert kind in kinds, kind
    assert log["verification"]["ok"] is True
    assert auditor.get("/api/v1/audit/verify").json()["ok"] is True


def test_the_whole_flow_over_http(tmp_path: Path) -> None:
    _flow(make_world(tmp_path))


@pytest.mark.postgres
@pytest.mark.slow
def test_the_whole_flow_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    world = make_world(tmp_path, postgres_url)
    assert world.plane.engine.dialect.name == "postgresql"
    _flow(world)


def test_a_job_beyond_the_remaining_budget_cannot_be_approved(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    from _web_plane import consortium_with_banks

    cid, operators = consortium_with_banks(world)
    greedy: dict[str, Any] = copy.deepcopy(HORIZONTAL)
    greedy["privacy"]["epsilon"] = 11.0  # the banks' lifetime budget is 10
    job = world.plane.create_job(world.admin, cid, "greedy", greedy, {b: "sme_loans" for b in BANKS})
    answer = world.client(operators["bank_a"]).post(f"/api/v1/jobs/{job['id']}/approvals/bank_a",
                                                    json={"approve": True})
    assert answer.status_code == 409 and answer.json()["field"] == "budget"
    assert "bank_a" in answer.json()["error"] and "11" in answer.json()["error"]
    assert world.gateway._party("bank_a").book.entry(job["spec"]["job_id"]) is None  # the agent reserved nothing


def test_an_agent_refusal_and_an_operator_refusal_are_recorded(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    from _web_plane import consortium_with_banks

    cid, operators = consortium_with_banks(world)
    job = world.plane.create_job(world.admin, cid, "j", HORIZONTAL, {b: "sme_loans" for b in BANKS})
    bank_b = world.client(operators["bank_b"])
    unexplained = bank_b.post(f"/api/v1/jobs/{job['id']}/approvals/bank_b", json={"approve": False})
    assert unexplained.json()["field"] == "reason"
    refused = bank_b.post(f"/api/v1/jobs/{job['id']}/approvals/bank_b",
                          json={"approve": False, "reason": "not this quarter"}).json()
    assert refused["status"] == "refused" and refused["refusals"] == {"bank_b": "not this quarter"}

    # the agent itself refuses a spec naming a column its dataset does not have (the registered schema is stale)
    world.gateway._party("bank_c").datasets["sme_loans"].columns.pop("sector")
    answer = world.client(operators["bank_c"]).post(f"/api/v1/jobs/{job['id']}/approvals/bank_c",
                                                    json={"approve": True})
    assert answer.status_code == 409 and "sector" in answer.json()["error"]
    assert world.plane.job(world.admin, job["id"])["approvals"]["bank_c"] == "refused"


def test_bad_input_gets_a_clear_json_error(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    from _web_plane import consortium_with_banks

    cid, _ = consortium_with_banks(world)
    admin = world.client(world.admin)
    assert admin.get("/api/v1/jobs/12345").json() == {"error": "no job 12345", "field": "job_id"}
    answer = admin.post(f"/api/v1/consortia/{cid}/jobs", json={**job_body(), "extra": 1})
    assert answer.status_code == 422 and answer.json()["field"] == "extra"
    bad = admin.post(f"/api/v1/consortia/{cid}/jobs", json=job_body(bank_a={"dataset": "sme_loans",
                                                                             "columns": ["salary"]}))
    assert bad.status_code == 400 and bad.json()["field"] == "datasets.bank_a.columns"
    nan = admin.post(f"/api/v1/consortia/{cid}/jobs", json=job_body(config={"run": {"workflow": "horizontal"},
                                                                           "privacy": {"epsilon": "lots"}}))
    assert nan.status_code == 400 and nan.json()["field"] == "config.privacy.epsilon"
    negative = admin.post(f"/api/v1/consortia/{cid}/jobs", json=job_body(
        config={**HORIZONTAL, "privacy": {"epsilon": -1.0, "delta": 1e-5, "dp3": {"clip": 1.0}}}))
    assert negative.status_code == 400 and negative.json()["field"] == "config.privacy.epsilon"
    endless = admin.post(f"/api/v1/consortia/{cid}/jobs", json=job_body(
        config={**HORIZONTAL, "run": {"name": "x", "workflow": "horizontal", "rounds": 10**9}}))
    assert endless.status_code == 400 and endless.json()["field"] == "config.run.rounds"
    headers = admin.get("/api/v1/me").headers  # API answers are never cached, sniffed or framed
    assert headers["cache-control"] == "no-store" and headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in headers["content-security-policy"]
    assert admin.post(f"/api/v1/consortia/{cid}/jobs", json=job_body(bank_z="x")).json()["field"] == "datasets.bank_z"
    assert admin.post("/api/v1/consortia", json={"name": "HK SME lending"}).status_code == 409
    assert admin.get("/api/v1/openapi.json").json()["openapi"].startswith("3.1")


WORKFLOW_CONFIGS = [
    {"run": {"workflow": "vertical", "name": "v"}, "vertical": {"label_holder": "bank_a", "epochs": 2}},
    {"run": {"workflow": "evaluation", "name": "e"}, "model": {"kind": "logistic"}},
    {"run": {"workflow": "scoring", "name": "sc"}},
    {"run": {"workflow": "checks", "name": "c"}},
]


def test_a_job_of_any_workflow_gets_a_spec(tmp_path: Path) -> None:
    from _web_plane import consortium_with_banks

    world = make_world(tmp_path)
    cid, _ = consortium_with_banks(world)
    admin = world.client(world.admin)
    for config in WORKFLOW_CONFIGS:
        label = "bank_a" if config["run"]["workflow"] == "vertical" else None
        answer = admin.post(f"/api/v1/consortia/{cid}/jobs", json={
            "name": "j", "config": config, "datasets": {"bank_a": "sme_loans", "bank_b": "sme_loans"},
            "label_holder": label})
        assert answer.status_code == 201, answer.text
        job = answer.json()
        assert job["spec"]["workflow"] == config["run"]["workflow"] and job["parties"] == ["bank_a", "bank_b"]
        assert job["spec"]["label_holder"] == label
    unusable = admin.post(f"/api/v1/consortia/{cid}/jobs", json=job_body(config={
        "run": {"workflow": "synthesis"}, "synthesis": {"epsilon": 1.0}}))
    assert unusable.status_code == 400 and unusable.json()["field"] == "config"
