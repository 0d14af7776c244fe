"""`sampan console`'s stack for real: coordinator (gRPC, mutual TLS) + three party agent processes + the control
plane over HTTP (uvicorn), driven with httpx the way the console's pages drive it (issue 14, items 1, 2, 3, 5, 6).

One flow, in order: the admin signs in with the one-time password, creates a consortium and invites three banks;
each bank's operator signs in, registers its dataset (schema and row count from its own agent) and approves a
horizontal DP job; the job runs; the live run view shows rounds, epsilon per party and level and the events;
the report opens. A second job that changes one column is refused by the agents: asked through the console (a
person's approval, and a standing rule set in the console and relayed to the agent: neither covers a column set
the agent does not serve) and started with the first job's approvals (refused by the coordinator early, and by
every agent when a coordinator skips that check: no round runs). A job that would
exceed a dataset's remaining lifetime budget cannot be approved (control plane and agent both refuse). The model
is promoted and exported. Stopping leaves no agent process; a second start in the same folder resumes it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from sampan.deploy.consent import ConsentRefused  # noqa: E402
from sampan.web.embedded import EmbeddedConsole  # noqa: E402

pytestmark = pytest.mark.slow

BANKS = ["bank_harbour", "bank_kowloon", "bank_lionrock"]
API = "/api/v1"
NEW_PASSWORD = "correct horse battery staple 14"


def _config(name: str, epsilon: float, rounds: int = 3) -> dict[str, Any]:
    return {"run": {"name": name, "rounds": rounds, "seed": 5}, "model": {"kind": "logistic"},
            "training": {"learning_rate": 0.1, "batch_size": 64}, "data": {"standardize": False},
            "privacy": {"epsilon": epsilon, "dp2": {"max_grad_norm": 1.0}},
            "deploy": {"dataset": "loans", "parties": BANKS}}


class Client:
    """One signed-in person: the session cookie plus its CSRF header, as the console's pages send them."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=120)
        reply = self.http.post(f"{API}/auth/login", json={"username": username, "password": password})
        assert reply.status_code == 200, reply.text
        self.http.headers["X-CSRF-Token"] = reply.json()["csrf_token"]
        self.user = reply.json()["user"]

    def first_sign_in(self, one_time_password: str, new_password: str) -> Client:
        """Choose one's own password right after signing in with a one-time one (until then every other call is
        a 403, R14-WEB-1); the session stays signed in."""
        assert self.user["must_change_password"]
        self.post("/me/password", {"old_password": one_time_password, "new_password": new_password}, expect=204)
        self.user = self.get("/me")
        return self

    def get(self, path: str, **kw: Any) -> Any:
        reply = self.http.get(API + path, **kw)
        assert reply.status_code == 200, (path, reply.status_code, reply.text)
        return reply.json()

    def post(self, path: str, body: Any = None, expect: int = 200) -> Any:
        reply = self.http.post(API + path, json=body if body is not None else {})
        assert reply.status_code == expect, (path, reply.status_code, reply.text)
        return reply.json() if reply.content else None

    def close(self) -> None:
        self.http.close()


def _wait_run(admin: Client, run_id: str, timeout: float = 180.0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll the live run view until the run ends (and its report is written); every view seen on the way."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = admin.get(f"/runs/{run_id}")
        seen.append(view)
        if view["status"] in ("completed", "failed", "cancelled") and (view["status"] != "completed"
                                                                         or view["report_path"]):
            return view, seen
        time.sleep(0.25)
    raise AssertionError(f"run {run_id} did not end in {timeout} s: {seen[-1] if seen else None}")


def _agent_audit(root: Path, party: str) -> str:
    """Everything the party's own agent logged (its log file and its signed audit store), as text."""
    text = (root / party / "party.log").read_text(errors="replace") if (root / party / "party.log").exists() else ""
    for db in (root / party / "state").glob("*.db*"):  # the SQLite file and its write-ahead log
        text += db.read_bytes().decode("latin-1")
    return text


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedConsole, Any]]:
    root = tmp_path_factory.mktemp("console")
    embedded = EmbeddedConsole(root / "folder", port=0, n_smes=3000, budget_epsilon=10.0)
    started = embedded.start()
    try:
        assert embedded.wait_connected(90) == [], [a.out.read_text() for a in embedded.agents.values()]
        yield embedded, started
    finally:
        embedded.stop()


def test_console_flow_end_to_end(console: tuple[EmbeddedConsole, Any]) -> None:
    embedded, started = console
    root = started.folder
    assert started.first_start and started.admin_password and started.url.startswith("http://127.0.0.1:")
    assert httpx.get(started.url.rstrip("/") + f"{API}/health").json()["status"] == "ok"

    # --- the admin: sign in, new password, consortium, three banks invited ---------------------------------------
    admin = Client(started.url, "admin", started.admin_password)
    assert admin.user["must_change_password"]
    admin.post("/me/password", {"old_password": started.admin_password, "new_password": NEW_PASSWORD}, expect=204)
    consortium = admin.post("/consortia", {"name": "hk-sme-lending", "description": "three banks"}, expect=201)
    cid = consortium["id"]
    invites = {b: admin.post(f"/consortia/{cid}/members", {"organisation": b}, expect=201) for b in BANKS}
    assert all(i["one_time_password"] for i in invites.values())
    assert {p["name"]: p["connected"] for p in admin.get("/parties")} == dict.fromkeys(BANKS, True)

    # --- each bank's operator: sign in, its own catalogue, register its dataset (schema and count only) ---------
    ops = {b: Client(started.url, i["operator_username"], i["one_time_password"]).first_sign_in(
        i["one_time_password"], f"{b}'s own long password") for b, i in invites.items()}
    columns: list[str] = []
    for bank, op in ops.items():
        catalogue = op.get(f"/parties/{bank}/catalogue")
        assert [d["name"] for d in catalogue] == ["loans"] and catalogue[0]["rows"] > 100
        columns = list(catalogue[0]["columns"])
        dataset = op.post(f"/consortia/{cid}/datasets", {"party": bank, "name": "loans"}, expect=201)
        assert dataset["row_count"] == catalogue[0]["rows"] and "rows" not in json.dumps(dataset.get("schema"))
    other = ops["bank_harbour"].http.get(f"{API}/parties/bank_kowloon/catalogue")
    assert other.status_code == 403  # an operator acts for its own organisation only

    # --- job 1: created by the admin, approved by each operator (its agent signs and reserves) -----------------
    job = admin.post(f"/consortia/{cid}/jobs", {"name": "fedavg-dp", "config": _config("fedavg-dp", 3.0),
                                                "datasets": dict.fromkeys(BANKS, "loans")}, expect=201)
    for bank, op in ops.items():
        inbox = op.get(f"/parties/{bank}/inbox")
        item = next(i for i in inbox if i["job_id"] == job["id"])
        assert item["columns"] == columns and item["privacy"]["epsilon"] == 3.0
        assert item["remaining_epsilon"] == pytest.approx(10.0)
        job = op.post(f"/jobs/{job['id']}/approvals/{bank}", {"approve": True})
    assert job["status"] == "approved" and set(job["approvals"].values()) == {"approved"}
    approvals = admin.get(f"/jobs/{job['id']}/approvals")
    assert all(a["approval"]["signature"] and a["approval"]["decided_by"].startswith("person:") for a in approvals)

    # --- it runs; the live view shows rounds, epsilon per party and level, events; the report opens ----------
    job = admin.post(f"/jobs/{job['id']}/start")
    run_id = job["run_id"]
    view, seen = _wait_run(admin, run_id)
    assert view["status"] == "completed", view["error"]
    assert (view["round"], view["total_rounds"]) == (3, 3) and [r["round"] for r in view["rounds"]] == [1, 2, 3]
    assert set(view["epsilon"]) == set(BANKS)
    for bank in BANKS:
        spend = view["epsilon"][bank]
        assert 0 < spend["epsilon_spent"] <= 3.0 and spend["epsilon_budget"] == 3.0
        assert set(spend["by_level"]) == {"DP1", "DP2", "DP3"} and spend["by_level"]["DP2"] > 0
    kinds = {e["kind"] for e in view["events"]}
    assert {"run_created", "consent", "budget_charged", "round_saved", "run_completed"} <= kinds
    assert any(v["status"] == "running" for v in seen) or seen[0]["status"] == "completed"
    files = admin.get(f"/runs/{run_id}/files")
    report = Path(files["report_path"])
    assert report.is_file() and report.parent == root / "coordinator" / "reports"
    assert "<html" in report.read_text()[:500].lower() and run_id in report.read_text()
    page = admin.http.get(f"/console/runs/{run_id}/report")  # the console serves it to a signed-in person
    assert page.status_code == 200 and run_id in page.text and "content-security-policy" in page.headers
    assert httpx.get(started.url.rstrip("/") + f"/console/runs/{run_id}/report").status_code in (303, 401, 403)
    receipt = json.loads(Path(files["receipt_path"]).read_text())
    assert set(receipt["parties"]) == set(BANKS)
    assert admin.get(f"/jobs/{job['id']}")["status"] in ("finished", "completed")
    for bank, op in ops.items():  # the agent settles at close: spent stays, the unspent part of 3.0 is released
        deadline = time.monotonic() + 120
        while True:
            op.get(f"/parties/{bank}/catalogue")  # reading the catalogue refreshes the control plane's mirror
            budget = op.get(f"/parties/{bank}/budgets")[0]
            if budget["reserved_epsilon"] < 1e-9 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert budget["reserved_epsilon"] == pytest.approx(0.0, abs=1e-9), budget
        assert budget["spent_epsilon"] == pytest.approx(view["epsilon"][bank]["epsilon_spent"], rel=1e-6)

    # --- job 2 changes one column: the agents refuse it ---------------------------------------------------------
    changed = [c for c in columns if c != "sector"]
    job2 = admin.post(f"/consortia/{cid}/jobs", {
        "name": "fedavg-dp-no-sector", "config": _config("fedavg-dp-no-sector", 3.0),
        "datasets": {b: {"dataset": "loans", "columns": changed} for b in BANKS}}, expect=201)
    refused = ops["bank_kowloon"].http.post(f"{API}/jobs/{job2['id']}/approvals/bank_kowloon", json={"approve": True})
    assert refused.status_code == 409 and "data.columns" in refused.json()["error"], refused.text
    assert admin.get(f"/jobs/{job2['id']}")["approvals"]["bank_kowloon"] == "refused"
    assert "data.columns" in _agent_audit(root, "bank_kowloon")
    start2 = admin.http.post(f"{API}/jobs/{job2['id']}/start")
    assert start2.status_code == 409  # not approved: the control plane does not start it

    # ... asked under a standing rule (set in the console, relayed to the agent) that covers job 1's columns only
    from sampan.deploy.consent import Approval, JobSpec

    gateway = embedded.plane.gateway
    rule = {"id": "console-loans-lr", "dataset": "loans", "workflows": ["horizontal"], "model_kinds": ["logistic"],
            "max_epsilon": 3.0, "columns": columns}
    ops["bank_harbour"].post("/parties/bank_harbour/rules", {"rule": rule}, expect=201)  # relayed to the agent
    assert "consent_rule_added" in _agent_audit(root, "bank_harbour") and rule["id"] in _agent_audit(root,
                                                                                                   "bank_harbour")
    spec2 = JobSpec.model_validate(admin.get(f"/jobs/{job2['id']}")["spec"])
    with pytest.raises(ConsentRefused, match="data.columns"):
        gateway.request_approval("bank_harbour", spec2, f"rule:{rule['id']}")

    # ... and started with job 1's approvals: the coordinator refuses early; every agent refuses at open
    config2 = admin.get(f"/jobs/{job2['id']}")["config"]
    first = [Approval.model_validate(a["approval"]) for a in approvals]
    with pytest.raises(ConsentRefused):
        gateway.start(str(job2["id"]), spec2, config2, first)
    coordinator = embedded.coordinator  # a coordinator that skips its own check: the agents still refuse
    forged_run = coordinator.store.create_run(name="replayed", workflow="horizontal", seed=1, config=dict(config2),
                                              total_rounds=3, run_id=spec2.job_id)
    coordinator.record_consent(forged_run, spec2, first)
    coordinator._enqueue(forged_run)
    deadline = time.monotonic() + 120
    while coordinator.store.get_run(forged_run).status not in ("failed", "completed", "cancelled"):
        assert time.monotonic() < deadline, coordinator.store.get_run(forged_run).status
        time.sleep(0.2)
    failed = coordinator.store.get_run(forged_run)
    assert failed.status == "failed" and "consent" in (failed.error or ""), failed.error
    assert not coordinator.store.rounds(forged_run)  # no round ran: no data message was answered

    # --- a job over a dataset's remaining lifetime budget cannot be approved ----------------------------------
    spent = max(view["epsilon"][b]["epsilon_spent"] for b in BANKS)
    too_much = round(10.0 - spent + 0.5, 3)
    job3 = admin.post(f"/consortia/{cid}/jobs", {"name": "over-budget", "config": _config("over-budget", too_much),
                                                 "datasets": dict.fromkeys(BANKS, "loans")}, expect=201)
    over = ops["bank_lionrock"].http.post(f"{API}/jobs/{job3['id']}/approvals/bank_lionrock", json={"approve": True})
    assert over.status_code == 409 and over.json()["field"] == "budget", over.text
    spec3 = JobSpec.model_validate(admin.get(f"/jobs/{job3['id']}")["spec"])
    with pytest.raises(ConsentRefused, match="budget"):  # the agent's own book refuses it too
        gateway.request_approval("bank_lionrock", spec3, "person:bank_lionrock-operator")

    # --- the model: candidate -> approved, exported ---------------------------------------------------------------
    models = admin.get("/models")
    model = next(m for m in models if m["run_id"] == run_id)
    name, version = model["name"], model["version"]
    assert admin.get(f"/models/{name}/{version}")["stage"] == "candidate"
    promoted = admin.post(f"/models/{name}/{version}/stage", {"stage": "approved", "note": "validated"})
    assert promoted["stage"] == "approved"
    exported = admin.get(f"/models/{name}/{version}/export")
    assert exported and json.dumps(exported).count(name) >= 1

    # --- every control-plane action is in the signed audit chain ------------------------------------------------
    assert admin.get("/audit/verify")["ok"]
    for client in [admin, *ops.values()]:
        client.close()

    # --- stop: no agent left; a second start in the same folder resumes it -----------------------------------------
    pids = [a.pid for a in embedded.agents.values()]
    embedded.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    again = EmbeddedConsole(root, port=0)
    restarted = again.start()
    try:
        assert not restarted.first_start and restarted.admin_password is None
        assert again.wait_connected(90) == []
        admin = Client(restarted.url, "admin", NEW_PASSWORD)
        assert admin.get(f"/runs/{run_id}")["status"] == "completed"
        assert [j["name"] for j in admin.get(f"/consortia/{cid}/jobs")][:1] == ["fedavg-dp"]
        admin.close()
    finally:
        again.stop()

