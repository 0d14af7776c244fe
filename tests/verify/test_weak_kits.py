"""The party-kit registry and the tap: kits by name (unknown: a clear error), the tap keeps copies per round, and
the weak platform's vertical edge cases (no verifier party; refusals it states up front)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from _weak_fixtures import German

from sampan.verify.api import PartyConnect, PartyRegistration, ProjectCreate, TaskSpec
from sampan.verify.backend import BackendError
from sampan.verify.kits import KITS, KitError, PartyKit, RecordingTap, Tap, get_kit
from sampan.verify.platforms.weak import WeakBackend
from sampan.verify.platforms.weak_kit import WeakKit, WeakKitError


def test_registry_loads_the_weak_kit_with_its_hook() -> None:
    def hook(r: int, w: np.ndarray) -> np.ndarray:
        return -w

    kit = get_kit("weak", update_hook=hook)
    assert isinstance(kit, WeakKit) and isinstance(kit, PartyKit) and kit.update_hook is hook
    assert set(KITS) >= {"weak", "sampan", "flower"}
    with pytest.raises(KitError, match=r"no party kit named 'nope' \(known kits: flower, sampan, weak\)"):
        get_kit("nope")


def test_recording_tap_keeps_copies_per_round() -> None:
    tap = RecordingTap()
    assert isinstance(tap, Tap)
    weights = np.array([1.0, 2.0])
    tap.received("model", 1, {"weights": weights})
    tap.sent("update", 1, {"weights": weights, "n": np.array([3])})
    weights[:] = 0  # a kit reusing its buffer cannot change what was recorded
    tap.sent("update", 2, {"weights": weights})
    assert tap.updates()[1]["weights"].tolist() == [1.0, 2.0]
    assert tap.rounds() == [1, 2] and len(tap.of("received", "model")) == 1


def test_a_kit_for_a_party_not_in_the_job_is_refused() -> None:
    with WeakBackend() as backend:
        project = backend.create_project(ProjectCreate(name="k")).project_id
        connect = backend.register_party(project, PartyRegistration(name="v", role="data_owner",
                                                                    operated_by="verifier")).connect
        assert connect is not None
        job = backend.submit_job(project, TaskSpec(kind="horizontal", label="y", features={"v": ["x"]}, rounds=1,
                                                   timeout_s=5))
        with pytest.raises(WeakKitError, match="party 'mallory' is not in job"):
            get_kit("weak").run(job.job_id, "mallory", None, connect, None, RecordingTap(),  # type: ignore[arg-type]
                                threading.Event())
        with pytest.raises(WeakKitError, match="did not answer"):
            dead = PartyConnect(address="127.0.0.1:9", protocol="weak-http-json/1")
            get_kit("weak").run(job.job_id, "v", None, dead, None, RecordingTap(),  # type: ignore[arg-type]
                                threading.Event())
        backend.cancel(job.job_id)


@pytest.mark.shared_data
def test_vertical_refusals_and_a_platform_only_vertical_job() -> None:
    german = German()
    a, b = german.features[:20], german.features[20:]
    with WeakBackend() as backend:
        project = backend.create_project(ProjectCreate(name="v")).project_id
        backend.register_party(project, PartyRegistration(name="bank", role="label_holder", operated_by="platform",
                                                          data=german.table(german.order[:800], a, ids=True)))
        backend.register_party(project, PartyRegistration(name="shop", role="feature_holder", operated_by="platform",
                                                          data=german.table(german.order[200:], b, ids=True,
                                                                            label=False)))
        backend.register_party(project, PartyRegistration(name="lab", role="label_holder", operated_by="verifier"))
        spec = {"kind": "vertical", "label": "label", "id_column": "id", "rounds": 20, "learning_rate": 0.5,
                "seed": 9}
        with pytest.raises(BackendError) as exc:
            backend.submit_job(project, TaskSpec(**{**spec, "features": {"lab": a, "shop": b}}))  # type: ignore[arg-type]
        assert exc.value.code == "unsupported" and exc.value.field == "features"
        with pytest.raises(BackendError) as exc:
            backend.submit_job(project, TaskSpec(**{**spec, "features": {"bank": a, "shop": b},  # type: ignore[arg-type]
                                                    "dropout": {"party": "shop", "after_round": 2}}))
        assert exc.value.code == "unsupported" and exc.value.field == "dropout"
        job = backend.submit_job(project, TaskSpec(**{**spec, "features": {"bank": a, "shop": b}}))  # type: ignore[arg-type]
        deadline = time.monotonic() + 30
        while not backend.job(job.job_id).done and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.job(job.job_id).state == "succeeded"
        assert backend.results(job.job_id).metrics["auc"] > 0.7  # in-sample on the 600 joined rows
        model = backend.model(job.job_id)
        assert len(model.features) == len(german.features) and model.features[-1] == f"shop:{b[-1]}"
        scores = backend.predict(job.job_id, german.table(german.order[:4], label=False)).scores
        assert len(scores) == 4
