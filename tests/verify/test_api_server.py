"""Benchmark API v1 server: auth, version header, the one error envelope, the body limit, validation fields."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from _api_fake_backend import FakeBackend  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from sampan.verify.api import API_VERSION, VERSION_HEADER, TaskSpec  # noqa: E402
from sampan.verify.backend import BackendError, PlatformBackend  # noqa: E402
from sampan.verify.server import make_benchmark_app  # noqa: E402

TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROWS = {"columns": ["x", "y"], "rows": [[0.1, 1], [0.2, 0]]}


@pytest.fixture()
def api() -> TestClient:
    return TestClient(make_benchmark_app(FakeBackend(), token=TOKEN, max_body_bytes=4096),
                      raise_server_exceptions=False)


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers[VERSION_HEADER] == API_VERSION
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


def test_the_fake_is_a_platform_backend() -> None:
    assert isinstance(FakeBackend(), PlatformBackend)


def test_round_trip_through_every_endpoint(api: TestClient) -> None:
    info = api.get("/bench/v1/info", headers=AUTH)
    assert info.status_code == 200 and info.headers[VERSION_HEADER] == "1.0"
    assert info.json()["platform"] == "fake" and info.json()["api_version"] == "1.0"
    project = api.post("/bench/v1/projects", json={"name": "eval-1"}, headers=AUTH).json()
    pid = project["project_id"]
    for name in ("alice", "bob"):
        party = api.post(f"/bench/v1/projects/{pid}/parties", headers=AUTH,
                         json={"name": name, "role": "data_owner", "operated_by": "platform", "data": ROWS})
        assert party.status_code == 201 and party.json()["connect"] is None
    mine = api.post(f"/bench/v1/projects/{pid}/parties", headers=AUTH,
                    json={"name": "verifier", "role": "data_owner", "operated_by": "verifier"}).json()
    assert mine["connect"]["address"] == "127.0.0.1:9"
    spec = {"kind": "horizontal", "label": "y", "features": {"alice": ["x"], "bob": ["x"], "verifier": ["x"]},
            "rounds": 3}
    job = api.post(f"/bench/v1/projects/{pid}/jobs", json=spec, headers=AUTH)
    assert job.status_code == 201, job.text
    jid = job.json()["job_id"]
    for _ in range(500):
        state = api.get(f"/bench/v1/jobs/{jid}", headers=AUTH).json()
        if state["state"] == "succeeded":
            break
        time.sleep(0.01)
    assert state["round"] == 3
    results = api.get(f"/bench/v1/jobs/{jid}/results", headers=AUTH).json()
    assert [r["round"] for r in results["rounds"]] == [1, 2, 3] and results["metrics"]["auc"] == 0.5
    model = api.get(f"/bench/v1/jobs/{jid}/model", headers=AUTH).json()
    assert model["format"] == "linear.v1" and model["features"] == ["x"]
    evaluated = api.post(f"/bench/v1/jobs/{jid}/evaluate", json=ROWS, headers=AUTH).json()
    assert evaluated["rows"] == 2 and set(evaluated["metrics"]) == {"auc", "logloss", "accuracy"}
    assert api.post(f"/bench/v1/jobs/{jid}/predict", json=ROWS, headers=AUTH).json() == {"scores": [0.5, 0.5]}
    _error(api.post(f"/bench/v1/jobs/{jid}/cancel", headers=AUTH), 409, "conflict")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": TOKEN}])
def test_every_endpoint_needs_the_token(api: TestClient, headers: dict[str, str]) -> None:
    response = api.get("/bench/v1/info", headers=headers)
    _error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    _error(api.post("/bench/v1/projects", json={"name": "x"}, headers=headers), 401, "unauthorized")


def test_backend_refusals_keep_their_code_and_field(api: TestClient) -> None:
    error = _error(api.get("/bench/v1/jobs/nope", headers=AUTH), 404, "not_found")
    assert error["field"] == "job_id"
    _error(api.get("/bench/v1/no/such/route", headers=AUTH), 404, "not_found")
    pid = api.post("/bench/v1/projects", json={"name": "p"}, headers=AUTH).json()["project_id"]
    spec = {"kind": "vertical", "label": "y", "id_column": "id", "features": {"a": ["x"], "b": ["z"]}, "rounds": 1}
    error = _error(api.post(f"/bench/v1/projects/{pid}/jobs", json=spec, headers=AUTH), 422, "unsupported")
    assert error["field"] == "kind"
    _error(api.get(f"/bench/v1/jobs/{'j' * 3}/results", headers=AUTH), 404, "not_found")


def test_a_backend_bug_is_an_internal_error_without_its_message(api: TestClient) -> None:
    response = api.get("/bench/v1/jobs/boom", headers=AUTH)
    _error(response, 500, "internal")
    assert "secret" not in response.text and "1234.5" not in response.text and "Traceback" not in response.text


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "Bad Name", "role": "data_owner", "operated_by": "verifier"}, "name"),
    ({"name": "ok", "role": "king", "operated_by": "verifier"}, "role"),
    ({"name": "ok", "role": "data_owner", "operated_by": "platform"}, None),  # platform party without data
    ({"name": "ok", "role": "data_owner", "operated_by": "verifier", "extra": 1}, "extra"),
    ({"name": "ok", "role": "data_owner", "operated_by": "platform",
      "data": {"columns": ["a", "b"], "rows": [[1, 2], [3]]}}, "data"),
])
def test_invalid_bodies_name_the_field(api: TestClient, body: dict[str, Any], field: str | None) -> None:
    pid = api.post("/bench/v1/projects", json={"name": "p"}, headers=AUTH).json()["project_id"]
    error = _error(api.post(f"/bench/v1/projects/{pid}/parties", json=body, headers=AUTH), 422, "invalid")
    assert error["field"] == field, error


def test_malformed_json_is_invalid_not_a_crash(api: TestClient) -> None:
    response = api.post("/bench/v1/projects", content=b"{not json", headers={**AUTH, "Content-Type":
                                                                             "application/json"})
    _error(response, 422, "invalid")


def test_bodies_over_the_limit_get_413_before_parsing(api: TestClient) -> None:
    big = {"name": "p", "ca_pem": "x" * 5000}
    _error(api.post("/bench/v1/projects", json=big, headers=AUTH), 413, "too_large")

    def chunks() -> Any:  # no Content-Length: the limit counts the streamed bytes
        for _ in range(10):
            yield b"x" * 1000

    _error(api.post("/bench/v1/projects", content=chunks(), headers=AUTH), 413, "too_large")
    # unauthenticated large bodies are refused from the headers: 401 before the size or any byte is read
    _error(api.post("/bench/v1/projects", json=big), 401, "unauthorized")


def test_task_spec_rules() -> None:
    base: dict[str, Any] = {"kind": "horizontal", "label": "y", "features": {"a": ["x"], "b": ["x"]}, "rounds": 2}
    TaskSpec.model_validate(base)
    bad = [
        {**base, "features": {"a": ["x"], "b": ["z"]}},  # horizontal lists differ
        {**base, "kind": "vertical"},  # no id_column
        {**base, "rounds": 0},
        {**base, "rounds": 1001},
        {**base, "dropout": {"party": "c", "after_round": 1}},
        {**base, "dropout": {"party": "a", "after_round": 2}},
        {**base, "features": {"a": ["x", "x"], "b": ["x", "x"]}},
        {**base, "model": "mlp"},
    ]
    for spec in bad:
        with pytest.raises(ValueError):
            TaskSpec.model_validate(spec)


def test_construction_refuses_an_open_api() -> None:
    with pytest.raises(ValueError, match="token"):
        make_benchmark_app(FakeBackend(), token="")


def test_backend_error_codes_are_checked() -> None:
    assert BackendError("conflict", "m").status == 409
    with pytest.raises(ValueError, match="unknown"):
        BackendError("teapot", "m")


class _SlowSubmit(FakeBackend):
    def submit_job(self, project_id: str, spec: TaskSpec) -> Any:
        time.sleep(1.5)
        return super().submit_job(project_id, spec)


def test_a_slow_submit_blocks_no_other_request() -> None:
    import threading

    from sampan.verify.client import BenchmarkClient
    from sampan.verify.serve_local import serve_app

    with serve_app(make_benchmark_app(_SlowSubmit(), token=TOKEN)) as server, \
            BenchmarkClient(server.url, TOKEN) as client:
        pid = client.raw("POST", "/projects", json={"name": "p"}).json()["project_id"]
        client.raw("POST", f"/projects/{pid}/parties", json={"name": "a", "role": "data_owner",
                                                             "operated_by": "platform", "data": ROWS})
        spec = {"kind": "horizontal", "label": "y", "features": {"a": ["x"]}, "rounds": 1}
        slow = threading.Thread(target=client.raw, args=("POST", f"/projects/{pid}/jobs"), kwargs={"json": spec})
        slow.start()
        time.sleep(0.2)
        started = time.monotonic()
        assert client.info().platform == "fake"
        assert time.monotonic() - started < 1.0  # answered while the submit still sleeps
        slow.join(10)


def test_mounted_inside_another_app() -> None:
    from fastapi import FastAPI

    outer = FastAPI()
    outer.mount("/bench/v1", make_benchmark_app(FakeBackend(), token=TOKEN, prefix=""))
    client = TestClient(outer, raise_server_exceptions=False)
    assert client.get("/bench/v1/info", headers=AUTH).json()["platform"] == "fake"
    _error(client.get("/bench/v1/info"), 401, "unauthorized")
    _error(client.get("/bench/v1/jobs/x", headers=AUTH), 404, "not_found")
