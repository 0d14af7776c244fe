"""Horizontal GBDT under DP vs without, on Taiwan, through the one runner (issue 13 item 2).

    .venv/bin/python bench/hgbdt_dp_bench.py [--trees 20] [--depth 3] [--lr 0.3] [--epsilons 1 4 16 64]
                                             [--repeats 5] [--features-per-tree K] [--seed 7]

Writes bench/results/hgbdt_dp.json. Every row is one `sampan run` of the same config in process (`[source]
kind = "taiwan"`, 3 banks, iid, each bank's holdout 20%; AUC on every bank's holdout through the banks' own
`evaluate`), measured side by side in one run: without DP (quantile bin edges from the banks' sketches, early
stopping on a validation split) and under `[privacy.gbdt]` at each epsilon per bank (delta 1e-5, 'auto' noise
spread over every release the tree shape allows, public bin edges from the bounds below, no early stopping),
each DP setting `--repeats` times (the noise comes from the OS CSPRNG: mean, standard deviation, min and max).
The party's noise floor (multiplier 0.5) bounds how little noise any run gets: a large epsilon shows the cost of
public equal-width bins and no early stopping at that floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sampan.config import parse_config
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store

RESULTS = Path(__file__).parent / "results"
# public ranges an analyst can state without the data (UCI documentation, NT dollars): amounts beyond them fall
# in the outer bins
BOUNDS = {"LIMIT_BAL": [0, 800_000], "SEX": [1, 2], "EDUCATION": [0, 6], "MARRIAGE": [0, 3], "AGE": [20, 80],
          **{f"PAY_{k}": [-2, 8] for k in (0, 2, 3, 4, 5, 6)},
          **{f"BILL_AMT{k}": [-20_000, 300_000] for k in range(1, 7)},
          **{f"PAY_AMT{k}": [0, 50_000] for k in range(1, 7)}}


def config(args: argparse.Namespace, store: str, epsilon: float | None) -> Any:
    data: dict[str, Any] = {
        "run": {"name": f"hgbdt-dp-{epsilon}", "seed": args.seed, "store": store, "report_dir": args.reports},
        "source": {"kind": "taiwan", "n_parties": 3},
        "model": {"kind": "gbdt", "n_trees": args.trees, "max_depth": args.depth, "learning_rate": args.lr,
                  "n_bins": args.bins, "l2": args.l2, "min_child_weight": args.min_child_weight,
                  "early_stopping_rounds": args.trees}}
    if epsilon is not None:
        data["privacy"] = {"epsilon": epsilon, "delta": 1e-5, "gbdt": {"noise_multiplier": "auto", "bounds": BOUNDS}}
        if args.features_per_tree:
            data["privacy"]["gbdt"]["features_per_tree"] = args.features_per_tree
    return parse_config(data)


def one(args: argparse.Namespace, store: Store, url: str, epsilon: float | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    finished = start_run(config(args, url, epsilon), store)
    seconds = time.perf_counter() - t0
    info = store.get_run(finished.run_id).info or {}
    noise = ((info.get("receipt") or {}).get("noise_multipliers") or {}).get("GBDT")
    spent = max((p["epsilon_spent"] for p in ((info.get("privacy") or {}).get("parties") or {}).values()),
                default=None)
    return {"epsilon": epsilon, "auc": finished.final_metrics.get("auc"), "trees": info.get("trees"),
            "noise_multiplier": noise, "epsilon_spent": spent, "seconds": round(seconds, 2),
            "budget_stop": info.get("budget_stop")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", type=int, default=20)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--bins", type=int, default=16)
    parser.add_argument("--l2", type=float, default=10.0)
    parser.add_argument("--min-child-weight", type=float, default=20.0)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 4.0, 16.0, 64.0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--features-per-tree", type=int, default=None, help="privacy.gbdt.features_per_tree")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        args.reports = str(Path(tmp) / "reports")
        url = f"sqlite:///{Path(tmp) / 'runs.db'}"
        store = Store.open(url)
        rows = [one(args, store, url, None)]
        print(f"no DP: AUC {rows[0]['auc']:.4f}, {rows[0]['trees']} trees, {rows[0]['seconds']} s", flush=True)
        for epsilon in args.epsilons:
            runs = [one(args, store, url, epsilon) for _ in range(args.repeats)]
            aucs = np.array([r["auc"] for r in runs])
            r = {**runs[0], "auc": float(aucs.mean()), "auc_sd": float(aucs.std(ddof=1)) if len(aucs) > 1 else 0.0,
                 "auc_min": float(aucs.min()), "auc_max": float(aucs.max()), "repeats": len(runs),
                 "seconds": round(float(np.mean([x["seconds"] for x in runs])), 2)}
            rows.append(r)
            print(f"epsilon {epsilon:g}: AUC {r['auc']:.4f} ± {r['auc_sd']:.4f} (min {r['auc_min']:.4f}, max "
                  f"{r['auc_max']:.4f}, {len(runs)} runs), noise multiplier {r['noise_multiplier']:.3g}, spent "
                  f"{r['epsilon_spent']:.3g}, {r['trees']} trees, {r['seconds']} s per run", flush=True)
        store.close()
    RESULTS.mkdir(exist_ok=True)
    out = {"rows": rows, "args": {k: v for k, v in vars(args).items() if k != "reports"}, "bounds": BOUNDS,
           "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()}}
    suffix = f"_k{args.features_per_tree}" if args.features_per_tree else ""
    (RESULTS / f"hgbdt_dp{suffix}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
