"""The federated evaluation workflow from a run config: `[evaluation] model` names a model of the coordinator's
registry, resolved at run time (`RunRecorder.registered_model`); the parties evaluate it on their holdouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sampan.config import parse_config
from sampan.core.workflow import ModelArtifact
from sampan.horizontal.capability import EVALUATION, EvaluationWorkflow
from sampan.runtime.recorder import StoreRecorder
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store, StoreError

TRAIN = {"run": {"name": "ev-train", "rounds": 2, "seed": 7}, "source": {"kind": "consortium", "n_smes": 600}}


def _evaluation(tmp_path: Path, **section: Any) -> Any:
    return parse_config({**TRAIN, "run": {**TRAIN["run"], "name": "ev-eval", "report_dir": str(tmp_path / "rep")},
                         "evaluation": section})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'runs.db'}")


def test_evaluation_run_of_a_registered_model_equals_the_training_runs_final_evaluation(
        tmp_path: Path, store: Store) -> None:
    """Same seed -> same per-party holdout split, same registered arrays -> the same histograms, so the metrics
    are equal to the training run's last evaluation (eval_every = 1: the final round evaluates the released model)."""
    trained = start_run(parse_config({**TRAIN, "run": {**TRAIN["run"], "report_dir": str(tmp_path / "rep")}}), store)
    assert trained.model_name == "ev-train" and trained.model_version == 1
    config = _evaluation(tmp_path, model="ev-train")
    assert config.workflow == "evaluation"
    finished = start_run(config, store)
    assert finished.model_name is None and finished.result.models == ()
    assert finished.final_metrics == trained.final_metrics and finished.final_metrics["auc"] > 0.5
    assert finished.result.info["evaluated_model"]["name"] == "ev-train"
    assert set(finished.result.info["party_metrics"]) == set(trained.result.info.get("party_metrics") or
                                                               finished.result.info["party_metrics"])
    assert [m.name for m in store.list_models()] == ["ev-train"]  # nothing registered by the evaluation
    row = store.get_run(finished.run_id)
    assert row.workflow == "evaluation" and row.status == "completed" and row.config["evaluation"] == {
        "model": "ev-train"}  # the stored config names the model, never its arrays


def test_version_and_bins_reach_the_parties(tmp_path: Path, store: Store) -> None:
    start_run(parse_config({**TRAIN, "run": {**TRAIN["run"], "report_dir": str(tmp_path / "rep")}}), store)
    finished = start_run(_evaluation(tmp_path, model="ev-train", version=1, bins=10), store)
    assert len(finished.result.info["roc"][0]) <= 12  # a 10-bin histogram: at most 11 ROC points (+ ends)
    assert finished.result.info["evaluated_model"]["version"] == 1


def test_an_unknown_model_fails_the_run_naming_the_model(tmp_path: Path, store: Store) -> None:
    with pytest.raises(StoreError, match="no model 'absent' version 4"):
        start_run(_evaluation(tmp_path, model="absent", version=4), store)
    (row,) = store.list_runs(5)
    assert row.status == "failed" and "absent" in (row.error or "")


def test_recorder_resolves_the_coordinators_registry_and_python_callers_may_pass_an_artifact(
        tmp_path: Path, store: Store) -> None:
    trained = start_run(parse_config({**TRAIN, "run": {**TRAIN["run"], "report_dir": str(tmp_path / "rep")}}), store)
    recorder = StoreRecorder(store, trained.run_id)
    artifact = recorder.registered_model("ev-train")
    assert isinstance(artifact, ModelArtifact) and artifact.name == "ev-train" and "params" in artifact.arrays
    with pytest.raises(StoreError, match="no model 'nope'"):
        recorder.registered_model("nope")
    given = EVALUATION.workflow(type("C", (), {"evaluation": type("E", (), {"model": artifact})()})())
    assert isinstance(given, EvaluationWorkflow) and given.model is artifact
    with pytest.raises(ValueError, match="no resolved model"):
        EVALUATION.workflow(parse_config(TRAIN))
