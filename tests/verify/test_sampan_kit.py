"""The Sampan party kit: a Byzantine update hook on plain FedAvg, its refusal under SecAgg+, and a stopped kit
acting as a party that left (secure aggregation finishes without it). Backend called directly (no HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest

from sampan.verify.api import PartyRegistration, ProjectCreate, TableData, TaskSpec
from sampan.verify.kits import RecordingTap, get_kit
from sampan.web.bench_api import SampanBackend

FEATURES = ["x1", "x2", "x3"]


def _table(seed: int, n: int = 150) -> TableData:
    rng = np.random.default_rng(seed)  # reproducible test data only
    X = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ np.array([1.5, -1.0, 0.5]))))).astype(float)
    return TableData(columns=["id", *FEATURES, "y"],
                     rows=[[f"s{seed}-{i}", *map(float, X[i]), float(y[i])] for i in range(n)])


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[SampanBackend]:
    backend = SampanBackend(tmp_path)
    yield backend
    backend.close()


def _job(backend: SampanBackend, n: int, *, secure: bool, rounds: int = 3) -> tuple[str, list[str]]:
    project = backend.create_project(ProjectCreate(name="k")).project_id
    names = [f"bank{i}" for i in range(n)]
    for i, name in enumerate(names):
        verifier = i == 0
        backend.register_party(project, PartyRegistration(name=name, role="data_owner",
                                                          operated_by="verifier" if verifier else "platform",
                                                          data=None if verifier else _table(i)))
    spec = TaskSpec(kind="horizontal", label="y", id_column="id", features={n: FEATURES for n in names},
                    rounds=rounds, batch_size=32, secure_aggregation=secure, seed=2, timeout_s=60)
    return backend.submit_job(project, spec).job_id, names


def test_update_hook_replaces_the_plain_update(backend: SampanBackend) -> None:
    seen: dict[int, np.ndarray] = {}

    def flip(round_: int, update: np.ndarray) -> np.ndarray:
        seen[round_] = update.copy()
        return -3.0 * update

    job_id, names = _job(backend, 3, secure=False)
    tap = RecordingTap()
    kit = get_kit("sampan", update_hook=flip)
    thread = threading.Thread(target=kit.run, args=(job_id, names[0], _table(0), None, None, tap,
                                                    threading.Event()), daemon=True)
    thread.start()
    assert backend.wait(job_id, 60).state == "succeeded"
    thread.join(5)
    sent = tap.updates()
    assert sorted(sent) == sorted(seen) == [1, 2, 3]
    for r in seen:
        np.testing.assert_array_equal(sent[r]["update"], -3.0 * seen[r])


def test_update_hook_refused_under_secure_aggregation(backend: SampanBackend) -> None:
    job_id, names = _job(backend, 3, secure=True)
    kit = get_kit("sampan", update_hook=lambda r, u: u)
    errors: list[BaseException] = []

    def go() -> None:
        try:
            kit.run(job_id, names[0], _table(0), None, None, RecordingTap(), threading.Event())  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    job = backend.wait(job_id, 60)
    thread.join(5)
    assert job.state == "failed" and job.error is not None and job.error.code == "unsupported"
    assert errors and "secure aggregation" in str(errors[0])


class _StopAfter(RecordingTap):
    def __init__(self, stop: threading.Event, after: int) -> None:
        super().__init__()
        self.stop, self.after = stop, after

    def sent(self, kind: str, round: int, payload: Mapping[str, np.ndarray]) -> None:
        super().sent(kind, round, payload)
        if kind == "update" and round >= self.after:
            self.stop.set()


def test_stopped_kit_is_a_party_that_left(backend: SampanBackend) -> None:
    job_id, names = _job(backend, 4, secure=True, rounds=4)
    stop = threading.Event()
    thread = threading.Thread(target=get_kit("sampan").run,
                              args=(job_id, names[0], _table(0), None, None, _StopAfter(stop, 2), stop), daemon=True)
    thread.start()
    job = backend.wait(job_id, 60)
    thread.join(5)
    assert job.state == "succeeded", job.error
    rounds = backend.results(job_id).rounds
    assert names[0] in rounds[0].parties and names[0] not in rounds[-1].parties
