"""Shared by the Flower platform tests: a small synthetic federation driven through FlowerBackend directly."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from sampan.verify.api import PartyRegistration, ProjectCreate, TableData, TaskSpec
from sampan.verify.platforms.flower import FlowerBackend

FEATURES = ["a", "b", "c"]


def _table(rows: int, seed: int) -> TableData:
    rng = np.random.default_rng(seed)  # synthetic rows for a reproducible test
    x = rng.normal(size=(rows, 3))
    y = (x @ np.array([1.5, -1.0, 0.5]) + rng.normal(scale=0.5, size=rows) > 0).astype(float)
    return TableData(columns=[*FEATURES, "label"], rows=[[*map(float, x[i]), float(y[i])] for i in range(rows)])


def _setup(backend: FlowerBackend, verifier: bool = True) -> tuple[str, Any]:
    pid = backend.create_project(ProjectCreate(name="flower-behaviour")).project_id
    for i, name in enumerate(("bank-a", "bank-b")):
        backend.register_party(pid, PartyRegistration(name=name, role="data_owner", operated_by="platform",
                                                      data=_table(150, i)))
    connect = None
    if verifier:
        connect = backend.register_party(pid, PartyRegistration(name="verifier", role="data_owner",
                                                                operated_by="verifier")).connect
    return pid, connect


def _spec(parties: list[str], **extra: Any) -> TaskSpec:
    return TaskSpec.model_validate({"kind": "horizontal", "label": "label", "features": {p: FEATURES for p in parties},
                                    **{"rounds": 3, "seed": 3, "timeout_s": 90, **extra}})


def _wait(backend: FlowerBackend, job_id: str, limit: float = 90) -> str:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        state = backend.job(job_id).state
        if state in ("succeeded", "failed", "cancelled"):
            return state
        time.sleep(0.2)
    return backend.job(job_id).state
