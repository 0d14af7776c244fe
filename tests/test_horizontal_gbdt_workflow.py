"""Horizontal GBDT through the one runner (`model.kind = "gbdt"`), and federated evaluation of a registered model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sampan.config import parse_config
from sampan.core.workflow import ModelArtifact, RunContext
from sampan.horizontal.capability import EVALUATION, HORIZONTAL, EvaluationWorkflow
from sampan.horizontal.gbdt import predict_gbdt_payload
from sampan.horizontal.gbdt_workflow import HorizontalGBDTWorkflow
from sampan.runtime.federation import build_inprocess_federation
from sampan.runtime.recorder import StoreRecorder
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store


def _config(**model: object):
    return parse_config({"run": {"name": "hgb", "rounds": 1, "seed": 3},
                         "model": {"kind": "gbdt", "n_trees": 8, "max_depth": 3, "n_bins": 16, **model},
                         "source": {"kind": "consortium", "n_smes": 1500}})


def test_gbdt_runs_through_the_runner_and_registers_arrays_and_json(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    config = _config()
    assert isinstance(HORIZONTAL.workflow(config), HorizontalGBDTWorkflow)
    finished = start_run(config, store)
    assert finished.final_metrics["auc"] > 0.6
    assert 1 <= len(store.rounds(finished.run_id)) <= 8  # one round per tree (early stopping may cut)
    model = finished.result.models[0]
    assert model.meta["model"]["kind"] == "gbdt" and set(model.arrays) == {"edges", "edge_counts"}
    # the registered model scores rows outside the federation, the same way the banks evaluated it
    _, setups = build_inprocess_federation(config, 3)
    train, test = next(iter(setups.values())).data
    p = predict_gbdt_payload(model.meta["model"], model.arrays, test.X)
    assert p.shape == (len(test),) and np.all((p > 0) & (p < 1))


def test_gbdt_refuses_other_dp_levels_and_secure_aggregation_rather_than_run_without() -> None:
    with pytest.raises(ValueError, match=r"needs \[privacy.gbdt\]"):
        parse_config({**_config().to_dict(), "privacy": {"epsilon": 3.0, "dp2": {}}, "data": {"standardize": False}})
    with pytest.raises(ValueError, match="privacy.dp2 does not apply"):
        parse_config({**_config().to_dict(), "privacy": {"epsilon": 3.0, "dp2": {}, "gbdt": {}}})
    with pytest.raises(ValueError, match="cannot run under"):
        HorizontalGBDTWorkflow(parse_config({**_config().to_dict(), "secure_aggregation": {}}))


def test_federated_evaluation_of_a_given_model_registers_nothing(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    config = parse_config({"run": {"name": "lr", "rounds": 2, "seed": 3},
                           "source": {"kind": "consortium", "n_smes": 1500}})
    trained = start_run(config, store).result.models[0]
    transport, _ = build_inprocess_federation(config, 3)
    run_id = store.create_run(name="eval", workflow="evaluation", seed=3, config=config.to_dict(), total_rounds=1)
    workflow = EvaluationWorkflow(ModelArtifact("lr", trained.arrays, trained.meta))
    result = workflow.run(RunContext(run_id, 3, config, transport, StoreRecorder(store, run_id)))
    assert result.models == () and result.final_metrics["auc"] > 0.6 and "roc" in result.info
    assert set(result.info["party_metrics"]) == set(transport.parties)
    with pytest.raises(ValueError, match="no resolved model"):
        EVALUATION.workflow(config)
