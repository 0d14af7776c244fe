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
from sampan.data import PartyData
from sampan.horizontal.gbdt import predict_gbdt_payload, validation_split
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
    """The demo's run config: three banks of the built-in SME consortium, one GBDT, no DP (a run config may set
    [privacy.gbdt]; the demo compares with the pooled learner, which only the exact run equals)."""
    run: dict[str, Any] = {"name": "demo-horizontal-gbdt", "rounds": 1, "seed": seed}
    if report_dir is not None:
        run["report_dir"] = str(report_dir)
    return parse_config({"run": run, "model": {"kind": "gbdt", **DEMO_GBDT},
                         "source": {"kind": "consortium", "n_smes": n_smes}})


def _labels(data: PartyData) -> np.ndarray:
    """The demo's tables are labelled (the consortium generator writes a target); float for the learners."""
    assert data.y is not None, f"bank {data.party!r}: the demo table has no labels"
    return data.y.astype(float)


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"auc": roc_auc(y, p), "ks": ks_statistic(y, p), "brier": brier_score(y, p)}


def gbdt_demo_outcome(config: Any, seed: int, run_id: str, result: WorkflowResult, report: Path | None,
                      seconds: float) -> HorizontalGBDTOutcome:
    """The demo's tables (simulation only: it scores every bank's holdout rows here, in one process): the
    registered federated model, each bank's own GBDT and the pooled learner on the federation's bin edges,
    each fit on the same rows and early-stopped on the same validation rows as in the run."""
    params = config.model.gbdt_params()
    artifact = result.models[0]
    splits = load_splits(config, seed)
    names = list(next(iter(splits.values())).train.feature_names)
    parts = {bank: (*validation_split(bank, s.train), s.test) for bank, s in splits.items()}
    by_bank = {bank: _metrics(_labels(te), predict_gbdt_payload(artifact.meta["model"], artifact.arrays, te.X))
               for bank, (_, _, te) in parts.items()}
    alone = {}
    for bank, (tr, va, te) in parts.items():
        edges = [quantile_bin_edges(tr.X[:, j], params.n_bins) for j in range(tr.X.shape[1])]
        slots = {"own": make_slots("own", names, edges)}
        model, prov = fit_local(params, {"own": apply_bins(tr.X, edges)}, slots, _labels(tr),
                                val_bins={"own": apply_bins(va.X, edges)}, y_val=_labels(va))
        raw = predict_local(model, prov, {"own": apply_bins(te.X, edges)})
        alone[bank] = _metrics(_labels(te), 1 / (1 + np.exp(-raw)))
    stack = [np.vstack([p[k].X for p in parts.values()]) for k in range(3)]
    labels = [np.concatenate([p[k].y for p in parts.values()]).astype(float) for k in range(3)]
    counts = np.asarray(artifact.arrays["edge_counts"], dtype=np.int64)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    edges = [np.asarray(artifact.arrays["edges"])[bounds[j]:bounds[j + 1]] for j in range(len(counts))]
    slots = {"all": make_slots("all", names, edges, missing=True)}  # as the banks bin: a missing bin per feature
    model, prov = fit_local(params, {"all": apply_bins(stack[0], edges, missing=True)}, slots, labels[0],
                            val_bins={"all": apply_bins(stack[1], edges, missing=True)}, y_val=labels[1])
    raw = predict_local(model, prov, {"all": apply_bins(stack[2], edges, missing=True)})
    pooled = _metrics(labels[2], 1 / (1 + np.exp(-raw)))
    federated = _metrics(labels[2], predict_gbdt_payload(artifact.meta["model"], artifact.arrays, stack[2]))
    return HorizontalGBDTOutcome(run_id, federated, pooled, alone, by_bank, int(result.info.get("trees", 0)),
                                 seconds, report)
