"""GBDT with missing values: federated (horizontal, vertical) vs pooled LightGBM on Taiwan with 20% of values
removed at random (issue 13).

    .venv/bin/python bench/gbdt_missing_bench.py [--trees 100] [--seed 0] [--banks 3]

Writes bench/results/gbdt_missing.json. Everything compared is measured side by side in one run, on the same
masked data and the same fixed split:
(a) horizontal GBDT across `--banks` banks (the training rows dealt at random), run by the horizontal GBDT
    protocol in process (`sampan.horizontal.gbdt.train_horizontal_gbdt`, no DP), vs LightGBM on the pooled
    training rows; the Sampan learner on the pooled rows (its own quantile bins) is shown too, to separate
    the federation (shared bin edges) from the learner.
(b) vertical GBDT (bank: limits, demographics, repayment status and the label; partner: bill and payment
    amounts), dealer-masked histograms in process, vs LightGBM on the pooled columns of the same rows.
Hyper-parameters are the same everywhere: trees, depth 4 (LightGBM: max_depth 4, 16 leaves), learning rate,
32 bins (LightGBM max_bin 32, NaN in its own bin), L2 1, min child hessian 1, no early stopping.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from vertical_bench import _session, _split_columns  # same folder: shared set-up of a vertical federation

from sampan.core.party import PartyApp
from sampan.data.public import load_taiwan_default, shared_data_dir
from sampan.data.table import PartyData
from sampan.horizontal.gbdt import HorizontalGBDTParty, predict_horizontal, train_horizontal_gbdt
from sampan.metrics import roc_auc
from sampan.models.gbdt import GBDTParams, apply_bins, make_slots, quantile_bin_edges
from sampan.models.gbdt_local import fit_local, predict_local
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.gbdt import score_vertical_gbdt, train_vertical_gbdt
from sampan.vertical.session import Splits

RESULTS = Path(__file__).parent / "results"
MISSING_FRACTION = 0.2
TEST_FRACTION = 0.2


def mask(X: np.ndarray, seed: int) -> np.ndarray:
    """A copy of X with MISSING_FRACTION of its cells set to NaN, at random (seeded)."""
    out = np.array(X, dtype=np.float64, copy=True)
    out[np.random.default_rng(seed).random(out.shape) < MISSING_FRACTION] = np.nan
    return out


def lightgbm(params: GBDTParams, X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
             seed: int, names: list[str]) -> dict[str, Any]:
    """Pooled LightGBM with the same hyper-parameters: AUC, the best of 3 fits on 1 thread, and its top-5 gain
    importance (normalised, to compare with Sampan's)."""
    import lightgbm as lgb

    lgb_params = {"objective": "binary", "max_depth": params.max_depth, "num_leaves": 2 ** params.max_depth,
                  "learning_rate": params.learning_rate, "lambda_l2": params.l2,
                  "min_sum_hessian_in_leaf": params.min_child_weight, "min_data_in_leaf": 1,
                  "max_bin": params.n_bins, "min_gain_to_split": 0.0, "verbose": -1, "num_threads": 1,
                  "seed": seed, "deterministic": True, "use_missing": True}
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        booster = lgb.train(lgb_params, lgb.Dataset(X, y, params={"max_bin": params.n_bins, "verbose": -1}),
                            num_boost_round=params.n_trees)
        times.append(time.perf_counter() - t0)
    gain = booster.feature_importance(importance_type="gain")
    top = sorted(zip(names, gain / gain.sum(), strict=True), key=lambda kv: -kv[1])[:5]
    return {"auc": roc_auc(y_test, booster.predict(X_test)), "seconds_1_thread": min(times),
            "importance_top5": {k: float(v) for k, v in top}, "version": lgb.__version__}


def pooled_sampan(params: GBDTParams, X: np.ndarray, y: np.ndarray, X_test: np.ndarray,
                  y_test: np.ndarray, edges: list[np.ndarray] | None = None) -> dict[str, float]:
    """Sampan's learner on the pooled rows, its own quantile bins (or `edges`) with a missing bin per feature;
    and, as a diagnostic, without missing bins (NaN in the top value bin, the behaviour before issue 13)."""
    edges = edges or [quantile_bin_edges(X[:, j], params.n_bins) for j in range(X.shape[1])]
    out: dict[str, float] = {}
    for missing in (True, False):
        slots = {"all": make_slots("all", [f"f{j}" for j in range(X.shape[1])], edges, missing=missing)}
        t0 = time.perf_counter()
        model, provider = fit_local(params, {"all": apply_bins(X, edges, missing=missing)}, slots, y)
        seconds = time.perf_counter() - t0
        raw = predict_local(model, provider, {"all": apply_bins(X_test, edges, missing=missing)})
        key = "" if missing else "no_missing_bin_"
        out.update({f"{key}auc": roc_auc(y_test, raw), f"{key}seconds": seconds})
    return out


def masked_taiwan(seed: int) -> tuple[PartyData, np.ndarray]:
    """Taiwan with MISSING_FRACTION of its feature values removed (seeded), and the fixed test rows (seeded):
    the same data and split for the horizontal and the vertical comparison."""
    root = shared_data_dir()
    if root is None:
        raise SystemExit("Taiwan data not found: put ../shared/data beside the checkout or set SAMPAN_SHARED_DATA")
    data = load_taiwan_default(root / "taiwan_default")
    masked = PartyData(data.party, data.ids, mask(data.X, seed + 1), data.y, list(data.feature_names))
    test = np.random.default_rng(seed + 2).permutation(len(data))[:int(TEST_FRACTION * len(data))]
    return masked, np.sort(test)


def horizontal(params: GBDTParams, seed: int, n_banks: int) -> dict[str, object]:
    data, test = masked_taiwan(seed)
    X, y = data.X, np.asarray(data.y, dtype=float)
    train = np.setdiff1d(np.arange(len(y)), test)
    bank_of = np.random.default_rng(seed + 3).integers(0, n_banks, len(train))
    banks = [f"bank{k + 1}" for k in range(n_banks)]
    apps = {}
    for k, name in enumerate(banks):
        rows = train[bank_of == k]
        part = PartyData(name, data.ids[rows], X[rows], y[rows].astype(np.int8), list(data.feature_names))
        apps[name] = HorizontalGBDTParty(name, part, None)
    transport = InProcessTransport({n: _app(n, p) for n, p in apps.items()})
    t0 = time.perf_counter()
    result = train_horizontal_gbdt(transport, "gbdt-missing-bench", banks, params, list(data.feature_names))
    seconds = time.perf_counter() - t0
    auc = roc_auc(y[test], predict_horizontal(result, X[test]))
    pooled = pooled_sampan(params, X[train], y[train], X[test], y[test])
    # the horizontal learner is the pooled learner on the federation's shared bin edges: this separates the
    # shared (averaged per-bank quantile) edges from the missing-value handling
    shared = pooled_sampan(params, X[train], y[train], X[test], y[test], list(result.edges))
    lgb = lightgbm(params, X[train], y[train], X[test], y[test], seed, list(data.feature_names))
    bank = apps[banks[0]]
    return {"missing_bins_in_horizontal": bool(bank.slots and getattr(bank.slots[0], "missing", False)),
            "banks": n_banks, "rows_train": len(train), "rows_test": len(test), "trees": len(result.model.trees),
            "horizontal_auc": auc, "horizontal_seconds": seconds, "pooled_sampan": pooled,
            "pooled_sampan_on_shared_edges": shared, "lightgbm": lgb,
            "horizontal_minus_lightgbm_auc": auc - float(lgb["auc"]),
            "time_ratio_horizontal_over_lightgbm": seconds / float(lgb["seconds_1_thread"])}


def _app(name: str, party: HorizontalGBDTParty) -> PartyApp:
    """A bank's endpoint for the in-process transport: its GBDT handlers, keyed by message kind."""
    app = PartyApp(name)
    for kind, handler in party.handlers().items():
        app.register(kind, handler)
    return app


def vertical(params: GBDTParams, seed: int) -> dict[str, object]:
    data, test_rows = masked_taiwan(seed)
    partner_cols = [c for c in data.feature_names if c.startswith(("BILL_AMT", "PAY_AMT"))]
    tables = _split_columns(data, {"bank": [c for c in data.feature_names if c not in partner_cols],
                                   "partner": partner_cols}, "bank")
    session, parties, transport = _session(tables)
    # the aligned order is drawn afresh by PSI: the fixed test customers, found in it by id
    is_test = np.isin(tables["bank"].ids[parties["bank"].psi.aligned_rows], data.ids[test_rows])
    splits = Splits(np.flatnonzero(~is_test), np.arange(0), np.flatnonzero(is_test))
    t0 = time.perf_counter()
    result = train_vertical_gbdt(transport, session.run_id, "bank", ["partner"], splits.train, np.arange(0), params)
    seconds = time.perf_counter() - t0
    auc = score_vertical_gbdt(transport, session.relay, "bank", ["partner"], "eval", aligned=splits.test).meta["auc"]
    X = np.hstack([tables[p].X[parties[p].psi.aligned_rows] for p in ("bank", "partner")])  # simulation only
    y = np.asarray(tables["bank"].y, dtype=float)[parties["bank"].psi.aligned_rows]
    tr, te = splits.train, splits.test
    pooled = pooled_sampan(params, X[tr], y[tr], X[te], y[te])
    lgb = lightgbm(params, X[tr], y[tr], X[te], y[te], seed, [f"{p}: {c}" for p in ("bank", "partner")
                                                                for c in tables[p].feature_names])
    return {"rows_train": len(tr), "rows_test": len(te), "trees": result.trees, "vertical_auc": auc,
            "vertical_seconds": seconds, "pooled_sampan": pooled, "lightgbm": lgb,
            "vertical_minus_lightgbm_auc": auc - float(lgb["auc"]),
            "time_ratio_vertical_over_lightgbm": seconds / float(lgb["seconds_1_thread"]),
            "importance_top5": dict(list(result.importance.items())[:5])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--banks", type=int, default=3)
    ap.add_argument("--only", choices=("horizontal", "vertical"), default=None)
    args = ap.parse_args()
    params = GBDTParams(n_trees=args.trees, max_depth=4, learning_rate=0.1, n_bins=32, l2=1.0,
                        min_child_weight=1.0, early_stopping_rounds=10 ** 6)
    report: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {sys.version.split()[0]}", "load_average": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "params": params.__dict__,
        "missing_fraction": MISSING_FRACTION}
    for name, run in (("horizontal", lambda: horizontal(params, args.seed, args.banks)),
                      ("vertical", lambda: vertical(params, args.seed))):
        if args.only in (None, name):
            print(f"{name}:", flush=True)
            report[name] = run()
            print(json.dumps(report[name], indent=2), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gbdt_missing.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
