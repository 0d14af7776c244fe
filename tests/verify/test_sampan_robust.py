"""Sampan's robust aggregation through the Benchmark API: the verifier runs one Byzantine party among five (sign flip
x scaling, and a model-replacement backdoor, both from `sampan.audit.byzantine`); with the plain mean the attack
wins (negative controls), with the coordinate median the model stays near the clean one and the backdoor fails.
Robust aggregators are refused with secure aggregation and with DP (the reasons are in `sampan.web.bench_config`).
Backend called directly (no HTTP); synthetic data from fixed seeds (reproducible test data only)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from sampan.audit.byzantine import model_replacement_backdoor, scaling, sign_flip
from sampan.verify.api import DPSpec, PartyRegistration, ProjectCreate, TableData, TaskSpec
from sampan.verify.backend import BackendError
from sampan.verify.kits import UpdateHook, get_kit
from sampan.web.bench_api import SampanBackend
from sampan.web.bench_config import check_aggregator, strategy_section

FEATURES = ["x1", "x2", "x3", "x4"]  # x4 carries no signal: the backdoor's trigger column
TRUE = np.array([1.5, -1.0, 0.8, 0.0])
PARTIES = 5
TRIGGER = 6.0  # the trigger: x4 set to a value no honest row has (x4 ~ N(0, 1))


def _rows(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES)))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ TRUE - 0.3)))).astype(float)
    return X, y


def _table(X: np.ndarray, y: np.ndarray, tag: str) -> TableData:
    return TableData(columns=["id", *FEATURES, "y"],
                     rows=[[f"{tag}-{i}", *map(float, X[i]), float(y[i])] for i in range(len(y))])


def _spec(**fields: Any) -> TaskSpec:
    return TaskSpec(**fields)


class _GlobalTap:
    """Keeps the global model each round's fit message brought (the hook needs it to form a delta)."""

    def __init__(self) -> None:
        self.params: dict[int, np.ndarray] = {}

    def sent(self, kind: str, round: int, payload: Mapping[str, np.ndarray]) -> None:
        pass

    def received(self, kind: str, round: int, payload: Mapping[str, np.ndarray]) -> None:
        if kind == "fit" and "params" in payload:
            self.params[round] = np.asarray(payload["params"], dtype=np.float64).copy()


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampanBackend]:
    backend = SampanBackend(tmp_path_factory.mktemp("robust"))
    yield backend
    backend.close()


def _run(backend: SampanBackend, aggregator: str, attack: str | None) -> str:
    project = backend.create_project(ProjectCreate(name="robust")).project_id
    names = [f"bank{i}" for i in range(PARTIES)]
    for i, name in enumerate(names):
        verifier = i == 0
        backend.register_party(project, PartyRegistration(
            name=name, role="data_owner", operated_by="verifier" if verifier else "platform",
            data=None if verifier else _table(*_rows(i, 200), name)))
    spec = _spec(kind="horizontal", label="y", id_column="id", features={n: FEATURES for n in names}, rounds=4,
                 batch_size=32, learning_rate=0.2, seed=3, timeout_s=120, aggregator=aggregator)
    job_id = backend.submit_job(project, spec).job_id
    tap = _GlobalTap()

    def flip_and_scale(round_: int, weights: np.ndarray) -> np.ndarray:
        G = tap.params[round_]
        return G + scaling(sign_flip(weights - G), 10.0)

    def backdoor(round_: int, weights: np.ndarray) -> np.ndarray:
        G = tap.params[round_]
        X = G.copy()
        X[FEATURES.index("x4")] = 3.0  # the backdoored model: trigger rows scored as label 1
        return model_replacement_backdoor(G, X, n=PARTIES)

    hook: UpdateHook | None = {"flip": flip_and_scale, "backdoor": backdoor, None: None}[attack]
    thread = threading.Thread(target=get_kit("sampan", update_hook=hook).run,
                              args=(job_id, names[0], _table(*_rows(0, 200), names[0]), None, None, tap,
                                    threading.Event()), daemon=True)
    thread.start()
    job = backend.wait(job_id, 120)
    thread.join(5)
    assert job.state == "succeeded", job.error
    return job_id


@pytest.fixture(scope="module")
def figures(backend: SampanBackend) -> dict[tuple[str, str | None], tuple[float, float]]:
    """(aggregator, attack) -> (AUC on fresh rows, backdoor success: share of label-0 trigger rows scored >= 0.5)."""
    X, y = _rows(99, 2000)
    holdout = _table(X, y, "h")
    trig = X[y == 0].copy()
    trig[:, FEATURES.index("x4")] = TRIGGER
    trigger_rows = _table(trig, np.zeros(len(trig)), "t")
    out = {}
    for aggregator, attack in [("mean", None), ("median", None), ("mean", "flip"), ("median", "flip"),
                               ("mean", "backdoor"), ("median", "backdoor")]:
        job_id = _run(backend, aggregator, attack)
        auc = backend.evaluate(job_id, holdout).metrics.auc
        assert auc is not None
        scores = np.asarray(backend.predict(job_id, trigger_rows).scores)
        out[(aggregator, attack)] = (float(auc), float(np.mean(scores >= 0.5)))
    return out


def test_the_attacks_win_against_the_mean(figures: dict[tuple[str, str | None], tuple[float, float]]) -> None:
    clean_auc, clean_asr = figures[("mean", None)]
    assert clean_auc > 0.75 and clean_asr < 0.2, figures
    assert figures[("mean", "flip")][0] < clean_auc - 0.2, figures  # negative control: the Byzantine party bites
    assert figures[("mean", "backdoor")][1] > 0.8, figures


def test_the_median_keeps_the_model(figures: dict[tuple[str, str | None], tuple[float, float]]) -> None:
    clean_auc, clean_asr = figures[("mean", None)]
    assert abs(figures[("median", None)][0] - clean_auc) < 0.02, figures
    assert figures[("median", "flip")][0] > clean_auc - 0.03, figures
    auc, asr = figures[("median", "backdoor")]
    assert auc > clean_auc - 0.03 and asr < clean_asr + 0.1, figures


@pytest.mark.parametrize("name", ["median", "trimmed_mean", "krum"])
def test_robust_aggregators_refused_where_updates_are_hidden(name: str) -> None:
    base = {"kind": "horizontal", "label": "y", "id_column": "id", "features": {f"b{i}": FEATURES for i in range(5)},
            "rounds": 2, "aggregator": name}
    with pytest.raises(BackendError) as secure:
        check_aggregator(_spec(**base, secure_aggregation=True))
    assert secure.value.code == "unsupported" and "sum" in secure.value.message
    with pytest.raises(BackendError) as dp:
        check_aggregator(_spec(**base, dp=DPSpec(epsilon=1.0, delta=1e-5, clip=1.0)))
    assert dp.value.code == "unsupported" and dp.value.field == "aggregator"
    check_aggregator(_spec(**base))  # in the clear: accepted
    assert strategy_section(_spec(**base))["strategy"]["aggregator"] == name


def test_submit_refuses_secure_median(backend: SampanBackend) -> None:
    project = backend.create_project(ProjectCreate(name="refuse")).project_id
    names = [f"bank{i}" for i in range(4)]
    for i, name in enumerate(names):
        backend.register_party(project, PartyRegistration(name=name, role="data_owner", operated_by="platform",
                                                          data=_table(*_rows(i, 50), name)))
    spec = _spec(kind="horizontal", label="y", id_column="id", features={n: FEATURES for n in names}, rounds=2,
                 secure_aggregation=True, aggregator="median")
    with pytest.raises(BackendError) as refused:
        backend.submit_job(project, spec)
    assert refused.value.code == "unsupported" and "coordinator sees only the sum" in refused.value.message


def test_small_consortia_and_trimming() -> None:
    few = {"kind": "horizontal", "label": "y", "id_column": "id", "features": {f"b{i}": FEATURES for i in range(3)},
           "rounds": 2}
    with pytest.raises(BackendError, match="at least 4 parties"):
        check_aggregator(_spec(**few, aggregator="krum"))
    with pytest.raises(BackendError, match="vertical"):
        check_aggregator(_spec(**{**few, "kind": "vertical", "features": {"a": ["x1"], "b": ["x2"]}},
                               aggregator="median"))
    for n in range(3, 12):  # a trimmed mean trims at least one update at each end
        spec = _spec(**{**few, "features": {f"b{i}": FEATURES for i in range(n)}}, aggregator="trimmed_mean")
        assert int(np.floor(strategy_section(spec)["strategy"]["trim_fraction"] * n)) >= 1
    assert strategy_section(_spec(**few)) == {}


def test_info_declares_robust_aggregation(backend: SampanBackend) -> None:
    assert "robust_aggregation" in backend.info().capabilities
