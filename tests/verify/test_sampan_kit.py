"""The Sampan party kit: a Byzantine update hook with and without SecAgg+, and a stopped kit acting as a party that
left (secure aggregation finishes without it). Backend called directly (no HTTP)."""

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


def _hooked(backend: SampanBackend, secure: bool) -> tuple[dict[int, np.ndarray], RecordingTap]:
    seen: dict[int, np.ndarray] = {}

    def flip(round_: int, weights: np.ndarray) -> np.ndarray:
        seen[round_] = weights.copy()
        return -3.0 * weights

    job_id, names = _job(backend, 3, secure=secure)
    tap = RecordingTap()
    thread = threading.Thread(target=get_kit("sampan", update_hook=flip).run,
                              args=(job_id, names[0], _table(0), None, None, tap, threading.Event()), daemon=True)
    thread.start()
    job = backend.wait(job_id, 60)
    thread.join(5)
    assert job.state == "succeeded", job.error
    return seen, tap


def test_update_hook_replaces_the_plain_update(backend: SampanBackend) -> None:
    seen, tap = _hooked(backend, secure=False)
    sent = tap.updates()
    assert sorted(sent) == sorted(seen) == [1, 2, 3]
    for r in seen:
        np.testing.assert_allclose(sent[r]["weights"], -3.0 * seen[r])
        start = tap.of("received", "fit")[r - 1].payload["params"]
        np.testing.assert_allclose(sent[r]["update"], -3.0 * seen[r] - start)


def test_update_hook_acts_before_masking(backend: SampanBackend) -> None:
    """Under SecAgg+ the hook's weights are what the party masks: its clear input (tapped just inside the
    masking step) is the hooked model's delta, and what leaves the party is ring elements only."""
    seen, tap = _hooked(backend, secure=True)
    clear = {m.round: m.payload for m in tap.of("sent", "update_clear")}
    assert sorted(clear) == sorted(seen) == [1, 2, 3]
    for r in seen:
        np.testing.assert_allclose(clear[r]["weights"], -3.0 * seen[r])
        sent = tap.updates()[r]
        assert set(sent) == {"masked", "masked_update"} and sent["masked_update"].dtype == np.uint64


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


def test_a_late_kit_learns_the_job_failed(backend: SampanBackend) -> None:
    """A job that fails before the verifier's kit joins still ends that party's seat: the kit does not hang."""
    project = backend.create_project(ProjectCreate(name="late")).project_id
    backend.register_party(project, PartyRegistration(name="a", role="data_owner", operated_by="verifier"))
    backend.register_party(project, PartyRegistration(name="b", role="data_owner", operated_by="platform",
                                                      data=_table(1)))
    spec = TaskSpec(kind="horizontal", label="y", id_column="id", features={"a": ["nope"], "b": ["nope"]},
                    rounds=1, timeout_s=1)
    job_id = backend.submit_job(project, spec).job_id
    assert backend.wait(job_id, 30).state == "failed"
    stop = threading.Event()
    with pytest.raises(Exception, match="party 'a'"):
        get_kit("sampan").run(job_id, "a", _table(0), None, None, RecordingTap(), stop)  # type: ignore[arg-type]
