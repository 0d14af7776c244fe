"""Sampan's Benchmark API mounted on the control-plane app (AppSettings.bench_token): same routes, own token."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

from _web_plane import make_world  # noqa: E402

from sampan.web.app import AppSettings, create_app  # noqa: E402

TOKEN = "bench-" + "x" * 26


def test_control_plane_serves_the_benchmark_api(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    app = create_app(world.plane, AppSettings(console=False, bench_token=TOKEN))
    client = TestClient(app)
    assert client.get("/bench/v1/info").status_code == 401  # never open
    answer = client.get("/bench/v1/info", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.headers["X-Bench-API-Version"] == "1.0"
    info = answer.json()
    assert info["platform"] == "sampan" and info["party_kit"] == "sampan"
    assert info["claims"]["secure_aggregation"] is True and info["claims"]["mtls"] is False
    created = client.post("/bench/v1/projects", json={"name": "p1"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert created.status_code == 201 and created.json()["project_id"].startswith("p-")
    # without the setting, nothing is mounted
    plain = TestClient(create_app(world.plane, AppSettings(console=False)))
    assert plain.get("/bench/v1/info", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
