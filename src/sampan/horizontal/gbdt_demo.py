"""`sampan demo --model gbdt`: the config of the recorded horizontal GBDT run, and its simulation-only baselines.

The run itself goes through the one runner (`HorizontalGBDTWorkflow`); here only what a demo adds: the
built-in three-bank consortium as a run config, and each bank's own GBDT and the pooled learner (the
same learner on every bank's rows at once: simulation only, never in a deployment) on every bank's
holdout, for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sampan.config import parse_config
from sampan.core.workflow import WorkflowResult
from sampan.horizontal.simulation import load_splits
from sampan.metrics import brier_score, ks_statistic, roc_auc
from sampan.models.gbdt import apply_bins, make_slots, quantile_bin_edges
from sampan.models.gbdt_local import fit_local, predict_local

__all__ = ["HorizontalGBDTOutcome", "gbdt_demo_config", "gbdt_demo_outcome"]

DEMO_GBDT = {"n_trees": 300, "max_depth": 3, "learning_rate": 0.05, "n_bins": 32, "l2": 5.0, "min_child_weight": 5.0,
             "early_stopping_rounds": 30}


@dataclass
class HorizontalGBDTOutcome:
    run_id: str
    federated: dict[str, float]
    pooled: dict[str, float]
    alone: dict[str, dict[str, float]]
    federated_by_bank: dict[str, dict[str, float]]
    trees: int
    seconds: float
    report: Path | None


def gbdt_demo_config(seed: int, report_dir: Path | None, n_smes: int = 12000) -> Any:
    """The demo's run config: three banks of the built-in SME consortium, one GBDT, no DP (trees have none)."""
    run: dict[str, Any] = {"name": "demo-horizontal-gbdt", "rounds": 1, "seed": seed}
    if report_dir is not None:
        run["report_dir"] = str(report_dir)
    return parse_config({"run": run, "model": {"kind": "gbdt", **DEMO_GBDT},
                         "source": {"kind": "consortium", "n_smes": n_smes}})


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"auc": roc_auc(y, p), "ks": ks_statistic(y, p), "brier": brier_score(y, p)}


def _baselines(config: Any, seed: int) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """The pooled learner and each bank alone, with the demo's GBDT settings, on the banks' holdout rows."""
    params = config.model.gbdt_params()
    splits = load_splits(config, seed)
    names = list(next(iter(splits.values())).train.feature_names)
    alone = {}
    for bank, split in splits.items():
        edges = [quantile_bin_edges(split.train.X[:, j], params.n_bins) for j in range(split.train.X.shape[1])]
        slots = {"own": make_slots("own", names, edges)}
        model, prov = fit_local(params, {"own": apply_bins(split.train.X, edges)}, slots, split.train.y.astype(float))
        raw = predict_local(model, prov, {"own": apply_bins(split.test.X, edges)})
        alone[bank] = _metrics(split.test.y.astype(float), 1 / (1 + np.exp(-raw)))
    X = np.vstack([s.train.X for s in splits.values()])
    y = np.concatenate([s.train.y for s in splits.values()]).astype(float)
    edges = [quantile_bin_edges(X[:, j], params.n_bins) for j in range(X.shape[1])]
    slots = {"all": make_slots("all", names, edges)}
    model, prov = fit_local(params, {"all": apply_bins(X, edges)}, slots, y)
    test_X = np.vstack([s.test.X for s in splits.values()])
    test_y = np.concatenate([s.test.y for s in splits.values()]).astype(float)
    raw = predict_local(model, prov, {"all": apply_bins(test_X, edges)})
    return _metrics(test_y, 1 / (1 + np.exp(-raw))), alone


def gbdt_demo_outcome(config: Any, seed: int, run_id: str, result: WorkflowResult, report: Path | None,
                      seconds: float) -> HorizontalGBDTOutcome:
    """The demo's tables: the federated model (from the run) beside the simulation-only baselines."""
    pooled, alone = _baselines(config, seed)
    by_bank = {bank: {k: v for k, v in m.items() if k in ("auc", "ks", "brier")}
               for bank, m in (result.info.get("party_metrics") or {}).items()}
    federated = {k: result.final_metrics.get(k) for k in ("auc", "ks", "brier")}
    return HorizontalGBDTOutcome(run_id, federated, pooled, alone, by_bank, int(result.info.get("trees", 0)),
                                 seconds, report)
