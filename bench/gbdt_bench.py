"""Vertical GBDT vs LightGBM on pooled columns; time per tree at scale (issue 5).

    .venv/bin/pip install -r bench/requirements-gbdt.txt     # LightGBM, optional benchmark dependency
    .venv/bin/python bench/gbdt_bench.py [--quick]

Writes bench/results/gbdt.json. Everything compared is measured side by side in one run:
1. Taiwan default split vertically (bank: LIMIT_BAL, demographics, PAY_*; partner: BILL_AMT*, PAY_AMT*),
   same rows: Sampan vertical GBDT (dealer-masked histograms), Sampan's learner on the pooled columns
   (same bins), LightGBM on the pooled columns (same depth, trees, bins, L2, min child weight); AUC and
   training time, with the time ratio vertical / LightGBM.
2. Generated 100k rows x (30 bank + 300 partner) features: seconds per tree of vertical GBDT.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from vertical_bench import _session, taiwan_tables  # same folder: shared set-up of a vertical federation

from sampan.data.table import PartyData
from sampan.metrics import roc_auc
from sampan.models.gbdt import GBDTParams, apply_bins, make_slots, quantile_bin_edges
from sampan.models.gbdt_local import fit_local, predict_local
from sampan.vertical.gbdt import score_vertical_gbdt, train_vertical_gbdt
from sampan.vertical.session import Splits

RESULTS = Path(__file__).parent / "results"


def taiwan(params: GBDTParams, seed: int) -> dict[str, float]:
    tables = taiwan_tables()
    bank, partner = tables["bank"].feature_names, tables["partner"].feature_names
    session, parties, transport = _session(tables)
    splits = Splits.random(session.n_aligned, val_fraction=0.0, seed=seed)
    empty = np.arange(0)
    t0 = time.perf_counter()
    result = train_vertical_gbdt(transport, session.run_id, "bank", ["partner"], splits.train, empty, params)
    vertical_s = time.perf_counter() - t0
    vertical_auc = score_vertical_gbdt(transport, session.relay, "bank", ["partner"], "eval",
                                       aligned=splits.test).meta["auc"]
    # Pooled columns in the aligned order (simulation only).
    X = np.hstack([tables[p].X[parties[p].psi.aligned_rows] for p in ("bank", "partner")])
    y = tables["bank"].y[parties["bank"].psi.aligned_rows].astype(float)
    names = bank + partner
    edges = [quantile_bin_edges(X[splits.train, j], params.n_bins) for j in range(X.shape[1])]
    slots = {"all": make_slots("all", names, edges)}
    t0 = time.perf_counter()
    model, provider = fit_local(params, {"all": apply_bins(X[splits.train], edges)}, slots, y[splits.train])
    pooled_s = time.perf_counter() - t0
    pooled_auc = roc_auc(y[splits.test], predict_local(model, provider, {"all": apply_bins(X[splits.test], edges)}))
    out = {"rows_train": len(splits.train), "trees": result.trees, "vertical_auc": vertical_auc,
           "vertical_seconds": vertical_s,
           "pooled_sampan_auc": pooled_auc, "pooled_sampan_seconds": pooled_s, "waves": result.waves}
    try:
        import lightgbm as lgb
    except ImportError:
        out["lightgbm"] = "not installed: pip install -r bench/requirements-gbdt.txt"
        return out
    lgb_params = {"objective": "binary", "max_depth": params.max_depth, "num_leaves": 2 ** params.max_depth,
                  "learning_rate": params.learning_rate, "lambda_l2": params.l2,
                  "min_sum_hessian_in_leaf": params.min_child_weight,
                  "min_data_in_leaf": 1, "max_bin": params.n_bins, "min_gain_to_split": 0.0, "verbose": -1,
                  "num_threads": 2, "seed": seed, "deterministic": True}
    # LightGBM's threads are hurt most by other load on a shared 2-core machine: time 1 and 2 threads.
    for threads in (1, 2):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            booster = lgb.train({**lgb_params, "num_threads": threads},
                                lgb.Dataset(X[splits.train], y[splits.train],
                                            params={"max_bin": params.n_bins, "verbose": -1}),
                                num_boost_round=params.n_trees)
            times.append(time.perf_counter() - t0)
        out[f"lightgbm_seconds_{threads}_thread"] = min(times)
        out[f"time_ratio_vertical_over_lightgbm_{threads}_thread"] = vertical_s / min(times)
    out.update({"lightgbm_auc": roc_auc(y[splits.test], booster.predict(X[splits.test])),
                "lightgbm_version": lgb.__version__})
    out["vertical_minus_lightgbm_auc"] = vertical_auc - out["lightgbm_auc"]
    out["load_average"] = os.getloadavg()[0]
    return out


def scale(n_rows: int, trees: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    ids = np.array([f"BR{i:08d}" for i in range(n_rows)], dtype=object)
    Xb, Xp = rng.standard_normal((n_rows, 30)), rng.standard_normal((n_rows, 300))
    logit = -2 + 0.4 * Xb[:, :5].sum(1) + 0.15 * Xp[:, :20].sum(1)
    y = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    tables = {"bank": PartyData("bank", ids, Xb, y, [f"b{i}" for i in range(30)]),
              "partner": PartyData("partner", ids, Xp, None, [f"p{i}" for i in range(300)])}
    session, _, transport = _session(tables, align=False)
    params = GBDTParams(n_trees=trees, max_depth=4, n_bins=32, early_stopping_rounds=10 ** 6)
    t0 = time.perf_counter()
    res = train_vertical_gbdt(transport, session.run_id, "bank", ["partner"], np.arange(n_rows), np.arange(0), params)
    total = time.perf_counter() - t0
    return {"rows": n_rows, "bank_features": 30, "partner_features": 300, "trees": res.trees,
            "seconds_total": total, "seconds_per_tree": total / res.trees}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    params = GBDTParams(n_trees=30 if args.quick else 100, max_depth=4, learning_rate=0.1, n_bins=32, l2=1.0,
                        min_child_weight=1.0, early_stopping_rounds=10 ** 6)
    report: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {sys.version.split()[0]}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "params": params.__dict__}
    print("1. Taiwan, vertical GBDT vs pooled", flush=True)
    report["taiwan"] = taiwan(params, args.seed)
    print(json.dumps(report["taiwan"], indent=2), flush=True)
    print("2. Scale: 100k x (30 + 300)", flush=True)
    report["scale"] = scale(10_000 if args.quick else 100_000, 3 if args.quick else 5, args.seed)
    print(json.dumps(report["scale"], indent=2), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gbdt.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
