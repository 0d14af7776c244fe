"""The same run on one process and on Ray with two local workers gives identical models (issue 15, item 4).

One private Ray instance (127.0.0.1, mutual TLS from an ephemeral party CA) serves the whole module: Ray starts
in several seconds. Every comparison is of bytes, not of tolerances: blocks are fixed by the data and results
come back in block order, so the engine cannot change a sum.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ray")

from sampan.compute import LocalEngine, reduce_in_order, row_blocks, use_engine  # noqa: E402
from sampan.compute.ray_engine import RayEngine  # noqa: E402
from sampan.config import parse_config  # noqa: E402
from sampan.core.workflow import ModelArtifact, RunContext  # noqa: E402
from sampan.models.gbdt_hist import bin_matrix, node_histograms, ring_node_histograms  # noqa: E402
from sampan.runtime.federation import build_inprocess_federation  # noqa: E402
from sampan.runtime.recorder import StoreRecorder  # noqa: E402
from sampan.runtime.runner import start_run  # noqa: E402
from sampan.runtime.store import Store  # noqa: E402

pytestmark = pytest.mark.slow  # Ray's start-up and the runs twice: tens of seconds on 2 shared cores


@pytest.fixture(scope="module")
def ray_engine() -> Iterator[RayEngine]:
    engine = RayEngine(num_workers=2)
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # this test module is not on the workers' path
    try:
        yield engine
    finally:
        engine.close()


class _Counting:
    """The Ray engine, counting the block calls a protocol sends it (so a test shows the work went there)."""

    name = "ray"

    def __init__(self, inner: RayEngine) -> None:
        self.inner, self.calls = inner, 0

    def put(self, data: Any) -> Any:
        return self.inner.put(data)

    def map_blocks(self, fn: Any, data: Any, blocks: Any, *args: Any) -> list[Any]:
        self.calls += 1
        return self.inner.map_blocks(fn, data, blocks, *args)

    def close(self) -> None:
        return None


def _block_sum(data: np.ndarray, start: int, stop: int, scale: float) -> np.ndarray:
    return data[start:stop].sum(axis=0) * scale


def test_blocks_come_back_in_block_order_with_tls_on_loopback(ray_engine: RayEngine) -> None:
    assert ray_engine.tls is not None  # mutual TLS by default, even for the private local instance
    data = np.random.default_rng(0).normal(size=(10_000, 3))
    blocks = row_blocks(len(data), 700)
    local = LocalEngine().map_blocks(_block_sum, data, blocks, 0.5)
    remote = ray_engine.map_blocks(_block_sum, ray_engine.put(data), blocks, 0.5)
    assert len(remote) == len(blocks)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(local, remote, strict=True))
    assert reduce_in_order(local).tobytes() == reduce_in_order(remote).tobytes()
    assert ray_engine.map_blocks(_block_sum, data, [], 1.0) == []


def _bad_block(data: np.ndarray, start: int, stop: int) -> None:
    raise ValueError(f"block {start}-{stop} refuses")


def test_a_block_error_comes_back_as_the_blocks_own_error_without_a_remote_traceback(ray_engine: RayEngine) -> None:
    with pytest.raises(ValueError) as caught:
        ray_engine.map_blocks(_bad_block, np.zeros(10), [(0, 5), (5, 10)])
    assert str(caught.value) in {"block 0-5 refuses", "block 5-10 refuses"}
    assert "Traceback" not in str(caught.value) and type(caught.value) is ValueError


def test_histograms_and_binning_are_the_same_bytes(ray_engine: RayEngine) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150_000, 4)).astype(np.float32)  # three row blocks
    X[rng.random(X.shape) < 0.05] = np.nan
    edges = [np.quantile(X[~np.isnan(X[:, j]), j], np.linspace(0.05, 0.95, 15)) for j in range(4)]
    nodes = [rng.permutation(len(X))[:90_000], np.arange(5, 120_000, 3)]
    grads = np.round(rng.normal(size=(2, len(X))) * 2 ** 20) / 2 ** 20
    masked = rng.integers(0, 2 ** 63, size=(2, len(X)), dtype=np.uint64)
    out = {}
    for name, engine in (("local", LocalEngine()), ("ray", ray_engine)):
        with use_engine(engine):
            bins = bin_matrix(X, edges, missing=True)
            n_bins = [len(e) + 2 for e in edges]
            out[name] = (bins.tobytes(), node_histograms(bins, n_bins, nodes, grads).tobytes(),
                         ring_node_histograms(bins, n_bins, nodes, masked).tobytes())
    assert out["local"] == out["ray"]


def test_secure_vertical_lr_encoding_and_scaler_are_the_same_bytes(ray_engine: RayEngine) -> None:
    """The secure LR's party-local passes (its training itself draws fresh masks, so runs differ by design)."""
    from sampan.vertical.secure_lr_encode import column_moments, encode_rows, fit_scaler

    rng = np.random.default_rng(2)
    X = rng.normal(size=(140_000, 5)) * [1, 10, 100, 0.1, 3]
    rows = rng.permutation(len(X))[:130_000]
    out = {}
    for name, engine in (("local", LocalEngine()), ("ray", ray_engine)):
        with use_engine(engine):
            finite, mean, std = column_moments(X, rows)
            scaler = fit_scaler(X, rows)
            out[name] = (finite.tobytes(), mean.tobytes(), std.tobytes(),
                         encode_rows(X, rows, scaler, with_ones=True).tobytes())
    assert out["local"] == out["ray"]


def _model_bytes(artifact: ModelArtifact) -> bytes:
    arrays = b"".join(name.encode() + np.ascontiguousarray(artifact.arrays[name]).tobytes()
                      for name in sorted(artifact.arrays))
    return arrays + json.dumps(artifact.meta, sort_keys=True, default=str).encode()


def _run(config: Any, tmp_path: Path, engine: Any, tag: str) -> Any:
    store = Store.open(f"sqlite:///{tmp_path / f'{tag}.db'}")
    with use_engine(engine):
        return start_run(config, store)


def test_horizontal_gbdt_gives_identical_model_bytes(ray_engine: RayEngine, tmp_path: Path) -> None:
    config = parse_config({"run": {"name": "hgb", "rounds": 1, "seed": 3},
                           "model": {"kind": "gbdt", "n_trees": 4, "max_depth": 3, "n_bins": 16},
                           "source": {"kind": "consortium", "n_smes": 1500, "n_parties": 3}})
    local = _run(config, tmp_path, LocalEngine(), "local")
    counting = _Counting(ray_engine)
    ray = _run(config, tmp_path, counting, "ray")
    assert counting.calls > 0  # the parties' binning and histograms ran as Ray tasks
    assert _model_bytes(local.result.models[0]) == _model_bytes(ray.result.models[0])
    assert local.final_metrics == ray.final_metrics


def test_horizontal_lr_and_its_evaluation_are_identical(ray_engine: RayEngine, tmp_path: Path) -> None:
    config = parse_config({"run": {"name": "lr", "rounds": 2, "seed": 5},
                           "source": {"kind": "consortium", "n_smes": 1500, "n_parties": 3}})
    local = _run(config, tmp_path, LocalEngine(), "local")
    counting = _Counting(ray_engine)
    ray = _run(config, tmp_path, counting, "ray")
    model = local.result.models[0]
    assert _model_bytes(model) == _model_bytes(ray.result.models[0])
    assert local.final_metrics == ray.final_metrics
    from sampan.horizontal.capability import EvaluationWorkflow

    results = []
    for tag, engine in (("local", LocalEngine()), ("ray", counting)):
        store = Store.open(f"sqlite:///{tmp_path / f'eval-{tag}.db'}")
        with use_engine(engine):
            transport, _ = build_inprocess_federation(config, 5)
            run_id = store.create_run(name="eval", workflow="evaluation", seed=5, config=config.to_dict(),
                                      total_rounds=1)
            workflow = EvaluationWorkflow(ModelArtifact("lr", model.arrays, model.meta))
            results.append(workflow.run(RunContext(run_id, 5, config, transport, StoreRecorder(store, run_id))))
            transport.close()
    assert counting.calls > 0  # the parties' row passes (moments, scores) ran as Ray tasks
    assert results[0].final_metrics == results[1].final_metrics
    assert json.dumps(results[0].info, sort_keys=True, default=str) == json.dumps(results[1].info, sort_keys=True,
                                                                                     default=str)


def test_vertical_gbdt_grows_identical_trees(ray_engine: RayEngine) -> None:
    from test_vertical_gbdt import PARAMS
    from test_vertical_lr import _session, _vertical_tables

    from sampan.vertical.gbdt import train_vertical_gbdt

    session, parties, transport = _session(_vertical_tables(True))
    splits = session.splits(seed=1)
    trees = []
    counting = _Counting(ray_engine)
    for engine in (LocalEngine(), counting):
        with use_engine(engine):
            train_vertical_gbdt(transport, session.run_id, "bank", ["payments", "delivery"], splits.train,
                                splits.val, PARAMS)
        model = parties["bank"].gbdt.model
        trees.append([(t.owner, np.asarray(t.left).tobytes(), np.asarray(t.value).tobytes()) for t in model.trees]
                     + [json.dumps(model.history, sort_keys=True)])
    assert counting.calls > 0  # the histograms ran as Ray tasks
    assert trees[0] == trees[1]
