"""The Flower platform: a real Flower federation (flwr 1.42 in .venv-flower) driven through Benchmark API v1.

Two platform-operated parties and one verifier-operated party (the "flower" kit, a real Flower client) train
horizontal FedAvg logistic regression on German credit; vertical, DP and secure-aggregation jobs are refused as
`unsupported`. Skipped, with the reason, only when Flower's venv is not installed (tools/install_flower.sh).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sampan.verify.api import PartyConnect, TableData
from sampan.verify.kits import RecordingTap, get_kit
from sampan.verify.platforms.flower_proc import FlowerMissing, flower_python

try:
    flower_python()
except FlowerMissing as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"Flower is not installed: {exc}", allow_module_level=True)

from fastapi.testclient import TestClient  # noqa: E402

from sampan.verify.platforms.flower import FlowerBackend  # noqa: E402
from sampan.verify.proxy import ProxySnapshot, RecordingProxy  # noqa: E402
from sampan.verify.server import make_benchmark_app  # noqa: E402

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TOKEN = "flower-test-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _german() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sampan.data.public import load_german_credit

    if not (DATA / "german_credit").is_dir():
        pytest.skip(f"German credit not found in {DATA}")
    data = load_german_credit(DATA)
    names = [n.lower().replace("=", "_") for n in data.feature_names]
    assert data.y is not None
    return np.asarray(data.X, dtype=np.float64), np.asarray(data.y, dtype=np.int64), names


def _table(x: np.ndarray, y: np.ndarray, names: list[str], features: list[str]) -> TableData:
    cols = [names.index(f) for f in features]
    rows: list[list[Any]] = [[float(v) for v in x[i, cols]] + [float(y[i])] for i in range(y.size)]
    return TableData(columns=[*features, "label"], rows=rows)


def _client(tls: bool) -> Any:
    backend = FlowerBackend(tls=tls)
    with TestClient(make_benchmark_app(backend, token=TOKEN)) as client:
        yield client
    backend.close()


@pytest.fixture(scope="module")
def api() -> Any:
    yield from _client(True)


@dataclass
class Federation:
    job_id: str
    job: dict[str, Any]
    tap: RecordingTap
    wire: ProxySnapshot
    errors: list[BaseException]


def _federate(api: TestClient, tables: dict[str, TableData], spec: dict[str, Any]) -> Federation:
    """A project with the platform parties' tables and one verifier party ("verifier") run by the flower kit
    behind the verifier's RecordingProxy; returns once the job has ended."""
    pid = api.post("/bench/v1/projects", json={"name": "flower-test"}, headers=HEADERS).json()["project_id"]
    for name, table in tables.items():
        if name == "verifier":
            continue
        body = {"name": name, "role": "data_owner", "operated_by": "platform", "data": table.model_dump()}
        assert api.post(f"/bench/v1/projects/{pid}/parties", json=body, headers=HEADERS).status_code in (200, 201)
    reply = api.post(f"/bench/v1/projects/{pid}/parties", headers=HEADERS,
                     json={"name": "verifier", "role": "data_owner", "operated_by": "verifier"})
    assert reply.status_code in (200, 201), reply.text
    connect = PartyConnect.model_validate(reply.json()["connect"])
    reply = api.post(f"/bench/v1/projects/{pid}/jobs", json=spec, headers=HEADERS)
    assert reply.status_code in (200, 201), reply.text
    job_id = reply.json()["job_id"]
    tap = RecordingTap()
    errors: list[BaseException] = []
    with RecordingProxy(connect.address, capture=True) as proxy:
        via_proxy = connect.model_copy(update={"address": proxy.address})

        def party() -> None:
            try:
                get_kit("flower").run(job_id, "verifier", tables["verifier"], via_proxy, None, tap, threading.Event())
            except BaseException as exc:  # noqa: BLE001 - reported by the caller
                errors.append(exc)

        thread = threading.Thread(target=party, daemon=True)
        thread.start()
        deadline = time.monotonic() + spec.get("timeout_s", 120)
        while True:
            job = api.get(f"/bench/v1/jobs/{job_id}", headers=HEADERS).json()
            if job["state"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        thread.join(timeout=30)
        wire = proxy.snapshot()
    return Federation(job_id, job, tap, wire, errors)


def _update_bytes(tap: RecordingTap) -> list[bytes]:
    """The verifier party's coefficient arrays as Flower puts them on the wire (raw float64, np.save layout)."""
    return [np.ascontiguousarray(u["weights"][:-1], dtype="<f8").tobytes() for u in tap.updates().values()]


def test_horizontal_job_through_the_api_reaches_auc_over_0_7(api: TestClient) -> None:
    x, y, names = _german()
    features = names  # all 61 encoded columns (the 20 attributes)
    order = np.random.default_rng(16).permutation(y.size)  # a fixed split for a reproducible test
    train, test = order[:800], order[800:]
    parts = np.array_split(train, 3)
    info = api.get("/bench/v1/info", headers=HEADERS).json()
    assert info["platform"] == "flower" and info["party_kit"] == "flower"
    assert info["claims"]["secure_aggregation"] is False and info["claims"]["dp"] is None
    assert info["claims"]["mtls"] is False and "vertical" not in info["capabilities"]
    tables = {name: _table(x[rows], y[rows], names, features)
              for name, rows in zip(("bank-a", "bank-b", "verifier"), parts, strict=True)}
    spec = {"kind": "horizontal", "label": "label", "features": {p: features for p in tables},
            "rounds": 4, "local_epochs": 2, "learning_rate": 0.1, "batch_size": 32, "seed": 7, "timeout_s": 240}
    run = _federate(api, tables, spec)
    assert run.job["state"] == "succeeded", run.job
    assert not run.errors, run.errors
    job_id = run.job_id

    results = api.get(f"/bench/v1/jobs/{job_id}/results", headers=HEADERS).json()
    assert [r["round"] for r in results["rounds"]] == [1, 2, 3, 4]
    assert set(results["rounds"][0]["parties"]) == {"bank-a", "bank-b", "verifier"}
    assert 0.5 < results["metrics"]["auc"] <= 1.0
    model = api.get(f"/bench/v1/jobs/{job_id}/model", headers=HEADERS).json()
    assert model["format"] == "linear.v1" and model["features"] == features
    holdout = _table(x[test], y[test], names, features).model_dump()
    scored = api.post(f"/bench/v1/jobs/{job_id}/evaluate", json=holdout, headers=HEADERS).json()
    assert scored["rows"] == test.size and scored["metrics"]["auc"] > 0.7, scored
    scores = api.post(f"/bench/v1/jobs/{job_id}/predict", json=holdout, headers=HEADERS).json()["scores"]
    assert len(scores) == test.size and all(0.0 <= s <= 1.0 for s in scores)

    # the kit saw its party's traffic in the clear: one update per round, the global model it got each round
    updates = run.tap.updates()
    assert sorted(updates) == [1, 2, 3, 4]
    assert updates[1]["weights"].shape == (len(features) + 1,)
    assert int(updates[1]["n"][0]) == parts[2].size
    assert len(run.tap.of("received", "model")) == 4 and len(run.tap.of("sent", "stats")) == 1
    # all of it went through the verifier's proxy, under TLS: the update's bytes are not on the wire
    assert run.wire.bytes_up > 4 * 8 * len(features) and run.wire.bytes_down > 0
    up = run.wire.captured("up")
    assert not any(chunk in up for chunk in _update_bytes(run.tap))


def test_without_tls_the_update_is_on_the_wire_in_the_clear() -> None:
    """The negative control of the TLS check above: the same federation in plaintext shows the update's bytes."""
    rng = np.random.default_rng(4)  # synthetic rows for a reproducible test
    tables: dict[str, TableData] = {}
    for name in ("bank-a", "bank-b", "verifier"):
        x = rng.normal(size=(120, 4))
        y = (x[:, 0] - x[:, 1] > 0).astype(float)
        tables[name] = TableData(columns=["a", "b", "c", "d", "label"],
                                 rows=[[*map(float, x[i]), float(y[i])] for i in range(y.size)])
    spec = {"kind": "horizontal", "label": "label", "features": {p: ["a", "b", "c", "d"] for p in tables},
            "rounds": 2, "seed": 1, "timeout_s": 120}
    for api in _client(False):
        run = _federate(api, tables, spec)
        assert run.job["state"] == "succeeded" and not run.errors, (run.job, run.errors)
        up = run.wire.captured("up")
        assert any(chunk in up for chunk in _update_bytes(run.tap))


def test_vertical_dp_and_secure_aggregation_are_refused_as_unsupported(api: TestClient) -> None:
    pid = api.post("/bench/v1/projects", json={"name": "flower-refuse"}, headers=HEADERS).json()["project_id"]
    table = TableData(columns=["id", "x", "label"], rows=[["1", 0.5, 1.0], ["2", 0.1, 0.0]]).model_dump()
    for name in ("bank-a", "bank-b"):
        body = {"name": name, "role": "data_owner", "operated_by": "platform", "data": table}
        assert api.post(f"/bench/v1/projects/{pid}/parties", json=body, headers=HEADERS).status_code in (200, 201)
    vertical = {"kind": "vertical", "label": "label", "id_column": "id",
                "features": {"bank-a": ["x"], "bank-b": ["x"]}, "rounds": 2}
    horizontal = {"kind": "horizontal", "label": "label", "features": {"bank-a": ["x"], "bank-b": ["x"]}, "rounds": 2}
    for body, field in ((vertical, "kind"), ({**horizontal, "dp": {"epsilon": 1.0, "delta": 1e-5}}, "dp"),
                        ({**horizontal, "secure_aggregation": True}, "secure_aggregation")):
        reply = api.post(f"/bench/v1/projects/{pid}/jobs", json=body, headers=HEADERS)
        assert reply.status_code == 422, reply.text
        assert reply.json()["error"]["code"] == "unsupported" and reply.json()["error"]["field"] == field
    bad = {**horizontal, "features": {"bank-a": ["nope"], "bank-b": ["nope"]}}
    reply = api.post(f"/bench/v1/projects/{pid}/jobs", json=bad, headers=HEADERS)
    assert reply.status_code == 422 and "nope" in reply.json()["error"]["message"]
