"""Imbalanced labels: class weights raise recall, keep DP-SGD's sensitivity, reach the parties; the decision
threshold and score-band table reach the run info and the registered model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sampan.config import parse_config
from sampan.metrics import ScoreHistogram
from sampan.metrics.thresholds import confusion_at
from sampan.models import LogisticRegression
from sampan.models.class_weights import ClassWeighted, resolve_class_weight
from sampan.models.local_training import TrainConfig, checked_train_config, train
from sampan.models.mlp import MLP
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store


def _imbalanced(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X @ np.array([1.5, -1.0, 0.5]) - 4.3 + rng.logistic(size=n) * 0.5 > 0).astype(np.int8)
    return X, y


def test_two_percent_positives_class_weights_raise_recall_at_a_fixed_threshold() -> None:
    X, y = _imbalanced()
    assert 0.01 < y.mean() < 0.04
    model = LogisticRegression(3)
    weights = resolve_class_weight("balanced", None, float(y.mean()))
    assert weights is not None and weights[1] > 10 * weights[0]
    recalls = {}
    for name, cw in (("plain", None), ("balanced", weights)):
        config = TrainConfig(epochs=5, batch_size=64, learning_rate=0.1, class_weight=cw)
        params = train(model, model.init_params(np.random.default_rng(1)), X, y, config,
                       np.random.default_rng(2)).params
        histogram = ScoreHistogram.from_scores(y, model.predict_proba(params, X), 100)
        recalls[name] = confusion_at(histogram, 0.5).recall
    assert recalls["plain"] < 0.5 < recalls["balanced"]


def test_target_positive_rate_weights_have_mean_one() -> None:
    w0, w1 = resolve_class_weight(None, 0.3, 0.05) or (0, 0)
    assert 0.95 * w0 + 0.05 * w1 == pytest.approx(1.0)
    assert w1 * 0.05 / (w0 * 0.95 + w1 * 0.05) == pytest.approx(0.3)
    assert resolve_class_weight({"1": 5.0}, None, None) == (1.0, 5.0)
    with pytest.raises(ValueError, match="explicit weights"):
        resolve_class_weight("balanced", None, None)


@pytest.mark.parametrize("model", [LogisticRegression(4), MLP(4, (5,))])
def test_dpsgd_clips_the_weighted_gradient_so_sensitivity_is_unchanged(model: LogisticRegression | MLP) -> None:
    """An example weighted 50x is clipped AFTER weighting: adding it moves the clipped sum by <= max_norm, and the
    ghost-clipped sum equals clipping each weighted per-example gradient."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(20, 4)) * 3, (rng.uniform(size=20) < 0.5).astype(np.float64)
    params = model.init_params(rng) + rng.normal(0, 0.5, model.n_params)
    weighted = ClassWeighted(model, (1.0, 50.0))
    max_norm = 0.7
    summed, _, _ = weighted.clipped_grad_sum(params, X, y, max_norm)
    grads = weighted.per_example_grads(params, X, y)
    norms = np.linalg.norm(grads, axis=1)
    expected = (grads * np.minimum(1.0, max_norm / norms)[:, None]).sum(axis=0)
    np.testing.assert_allclose(summed, expected, rtol=1e-9, atol=1e-12)
    without_last, _, _ = weighted.clipped_grad_sum(params, X[:-1], y[:-1], max_norm)
    assert np.linalg.norm(summed - without_last) <= max_norm + 1e-9
    assert y[-1] == 1.0 or np.linalg.norm(summed - without_last) <= max_norm + 1e-9


def test_a_party_refuses_malformed_class_weights() -> None:
    base = {"epochs": 1, "batch_size": 8, "learning_rate": 0.1}
    assert checked_train_config({**base, "class_weight": [1, 5]}).class_weight == (1.0, 5.0)
    for bad in ([1.0], [1.0, float("nan")], [0.0, 1.0], [1.0, 1e9], "balanced"):
        with pytest.raises(ValueError, match="class_weight"):
            checked_train_config({**base, "class_weight": bad})


def test_config_checks_weights_and_groups(tmp_path: Path) -> None:
    base = {"source": {"kind": "consortium", "n_smes": 600}}
    with pytest.raises(ValueError, match="not both"):
        parse_config({**base, "training": {"class_weight": "balanced", "target_positive_rate": 0.2}})
    with pytest.raises(ValueError, match="keys 0 and 1"):
        parse_config({**base, "training": {"class_weight": {"2": 1.0}}})
    privacy = {"epsilon": 5.0, "dp2": {"noise_multiplier": 1.0}}
    with pytest.raises(ValueError, match="must be explicit"):
        parse_config({**base, "data": {"standardize": False}, "privacy": privacy,
                      "training": {"class_weight": "balanced"}})
    config = parse_config({**base, "evaluation": {"threshold_rule": "approval_rate", "approval_rate": 0.8}})
    assert config.workflow == "horizontal"  # [evaluation] without a model: the training run's decision
    with pytest.raises(ValueError, match="group_bands"):
        parse_config({**base, "evaluation": {"group_bands": {"age": [1, 2]}}})


def test_a_run_trains_with_weights_and_registers_its_threshold(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    config = parse_config({"run": {"name": "imb", "rounds": 2, "seed": 5, "report_dir": str(tmp_path / "rep")},
                           "source": {"kind": "consortium", "n_smes": 600, "n_parties": 3},
                           "training": {"class_weight": "balanced"},
                           "evaluation": {"threshold_rule": "approval_rate", "approval_rate": 0.8}})
    finished = start_run(config, store)
    info = finished.result.info
    decision = info["decision"]
    assert decision["rule"] == "approval_rate" and abs(decision["approval_rate"] - 0.8) < 0.05
    assert sum(c for c in decision["confusion"].values()) == finished.final_metrics["n"]
    bands = info["score_bands"]
    assert sum(b["count"] for b in bands) == finished.final_metrics["n"]
    assert bands[-1]["cumulative_bad_capture"] == pytest.approx(1.0)
    meta = finished.result.models[0].meta
    assert meta["threshold"] == decision["threshold"] and meta["decision"]["approve_if"] == "pd < threshold"
    from sampan.models.scorer import model_threshold
    assert model_threshold(meta) == decision["threshold"]  # what `sampan score` and `sampan serve` decide at
    report = (tmp_path / "rep" / f"{finished.run_id}.html").read_text()
    assert "Decision threshold" in report and "Score bands" in report


def test_trees_take_explicit_class_weights_as_pos_weight_and_register_a_threshold(tmp_path: Path) -> None:
    from sampan.horizontal.gbdt_workflow import HorizontalGBDTWorkflow

    base = {"run": {"name": "imb-gbdt", "rounds": 1, "seed": 5, "report_dir": str(tmp_path / "rep")},
            "source": {"kind": "consortium", "n_smes": 600, "n_parties": 3},
            "model": {"kind": "gbdt", "n_trees": 3, "max_depth": 2}}
    with pytest.raises(ValueError, match="explicit class_weight"):
        parse_config({**base, "training": {"class_weight": "balanced"}})
    config = parse_config({**base, "training": {"class_weight": {"0": 1.0, "1": 4.0}},
                           "evaluation": {"threshold_rule": "cost_ratio", "cost_fn_fp": 3.0}})
    assert HorizontalGBDTWorkflow(config).params.pos_weight == pytest.approx(4.0)
    finished = start_run(config, Store.open(f"sqlite:///{tmp_path / 'runs.db'}"))
    decision = finished.result.info["decision"]
    assert decision["rule"] == "cost_ratio" and finished.result.models[0].meta["threshold"] == decision["threshold"]


def test_the_mlp_starts_as_a_linear_model() -> None:
    """Looks-linear init: mirrored units make the initial network an exact linear function of its inputs."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6))
    design = np.c_[X, np.ones(40)]
    for hidden in ((32,), (7,), (8, 5)):
        model = MLP(6, hidden)
        z = model.logits(model.init_params(np.random.default_rng(1)), X)
        fit, *_ = np.linalg.lstsq(design, z, rcond=None)
        assert np.abs(design @ fit - z).max() < 1e-10 and np.std(z) > 0
