"""The Flower platform: a real Flower federation (flwr 1.42 in .venv-flower) driven through Benchmark API v1.

Two platform-operated parties and one verifier-operated party (the "flower" kit, a real Flower client) train
horizontal FedAvg logistic regression on German credit; vertical, DP and secure-aggregation jobs are refused as
`unsupported`. Skipped, with the reason, only when Flower's venv is not installed (tools/install_flower.sh).
"""

from __future__ import annotations

import threading
import time
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


@pytest.fixture(scope="module")
def api() -> Any:
    backend = FlowerBackend()
    with TestClient(make_benchmark_app(backend, token=TOKEN)) as client:
        yield client
    backend.close()


def test_horizontal_job_through_the_api_reaches_auc_over_0_7(api: TestClient) -> None:
    x, y, names = _german()
    features = names  # all 61 encoded columns (the 20 attributes)
    order = np.random.default_rng(16).permutation(y.size)  # a fixed split for a reproducible test
    train, test = order[:800], order[800:]
    parts = np.array_split(train, 3)
    info = api.get("/bench/v1/info", headers=HEADERS).json()
    assert info["platform"] == "flower" and info["party_kit"] == "flower"
    assert info["claims"]["secure_aggregation"] is False and info["claims"]["dp"] is None
    project = api.post("/bench/v1/projects", json={"name": "flower-auc"}, headers=HEADERS).json()
    pid = project["project_id"]
    for name, rows in (("bank-a", parts[0]), ("bank-b", parts[1])):
        body = {"name": name, "role": "data_owner", "operated_by": "platform",
                "data": _table(x[rows], y[rows], names, features).model_dump()}
        assert api.post(f"/bench/v1/projects/{pid}/parties", json=body, headers=HEADERS).status_code in (200, 201)
    reply = api.post(f"/bench/v1/projects/{pid}/parties", headers=HEADERS,
                     json={"name": "verifier", "role": "data_owner", "operated_by": "verifier"})
    assert reply.status_code in (200, 201), reply.text
    connect = PartyConnect.model_validate(reply.json()["connect"])
    spec = {"kind": "horizontal", "label": "label", "features": {p: features for p in ("bank-a", "bank-b", "verifier")},
            "rounds": 4, "local_epochs": 2, "learning_rate": 0.1, "batch_size": 32, "seed": 7, "timeout_s": 240}
    reply = api.post(f"/bench/v1/projects/{pid}/jobs", json=spec, headers=HEADERS)
    assert reply.status_code in (200, 201), reply.text
    job_id = reply.json()["job_id"]

    tap = RecordingTap()
    stop = threading.Event()
    errors: list[BaseException] = []

    def party() -> None:
        try:
            get_kit("flower").run(job_id, "verifier", _table(x[parts[2]], y[parts[2]], names, features), connect,
                                  None, tap, stop)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=party, daemon=True)
    thread.start()
    deadline = time.monotonic() + 240
    while True:
        job = api.get(f"/bench/v1/jobs/{job_id}", headers=HEADERS).json()
        if job["state"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    thread.join(timeout=30)
    assert job["state"] == "succeeded", job
    assert not errors, errors

    results = api.get(f"/bench/v1/jobs/{job_id}/results", headers=HEADERS).json()
    assert [r["round"] for r in results["rounds"]] == [1, 2, 3, 4]
    assert set(results["rounds"][0]["parties"]) == {"bank-a", "bank-b", "verifier"}
    model = api.get(f"/bench/v1/jobs/{job_id}/model", headers=HEADERS).json()
    assert model["format"] == "linear.v1" and model["features"] == features
    holdout = _table(x[test], y[test], names, features).model_dump()
    scored = api.post(f"/bench/v1/jobs/{job_id}/evaluate", json=holdout, headers=HEADERS).json()
    assert scored["rows"] == test.size and scored["metrics"]["auc"] > 0.7, scored
    scores = api.post(f"/bench/v1/jobs/{job_id}/predict", json=holdout, headers=HEADERS).json()["scores"]
    assert len(scores) == test.size and all(0.0 <= s <= 1.0 for s in scores)

    # the kit saw its party's traffic in the clear: one update per round, the global model it got each round
    updates = tap.updates()
    assert sorted(updates) == [1, 2, 3, 4]
    assert updates[1]["coefficients"].shape == (len(features),)
    assert int(updates[1]["num_examples"][0]) == parts[2].size
    assert len(tap.of("received", "model")) == 4 and len(tap.of("sent", "stats")) == 1
    # the exported model is FedAvg of the last round's updates (weighted by rows), up to the other parties'
    final = np.array([*model["coefficients"], model["intercept"]])
    assert np.all(np.isfinite(final))


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
