"""Federated imputation and DP1 `auto` on Taiwan with missing values, through `sampan run` (issue 13 items 1, 7).

    .venv/bin/python bench/imputation_bench.py [--banks 3] [--missing 0.2] [--rounds 10] [--seed 7]

Writes bench/results/imputation.json. Taiwan (30,000 rows) is split into `--banks` CSV files (iid, seeded) with
`--missing` of every feature cell replaced by "?", "" or "nan" (seeded). Side by side, in one process:
- fill values: the federated median of each column (histograms over public bins summed across banks; without DP
  and under DP) against the exact median of the pooled training rows, as a share of the column's IQR;
- AUC of federated logistic regression (FedAvg, `--rounds`) on the banks' holdouts with median imputation vs
  the same run on files pre-filled with the exact pooled medians (the oracle: the imputation's cost only);
- under DP (epsilon 1 per bank, DP2 'auto'): the README's former DP1 example (noise 10, bounds [0, 1]) against
  `noise_multiplier = "auto"` with public bounds close to the real ranges: AUC and whether the warning fired.
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
from sampan.data import load_taiwan_default, shared_data_dir
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from hgbdt_dp_bench import BOUNDS  # noqa: E402  (public ranges of the Taiwan columns)

RESULTS = Path(__file__).parent / "results"
MARKERS = ("?", "", "nan")


def write_banks(root: Path, banks: int, missing: float, seed: int) -> tuple[list[Path], list[Path], list[str]]:
    """The banks' CSVs with missing cells, and the same files pre-filled with the pooled exact medians."""
    data = load_taiwan_default(shared_data_dir() / "taiwan_default")
    rng = np.random.default_rng(seed)
    X = data.X.copy()
    holes = rng.random(X.shape) < missing
    X[holes] = np.nan
    medians = np.nanmedian(X, axis=0)
    names = list(data.feature_names)
    owner = rng.integers(0, banks, len(X))
    raw, filled = [], []
    for b in range(banks):
        rows = np.flatnonzero(owner == b)
        for kind, out in (("raw", raw), ("filled", filled)):
            lines = ["id,y," + ",".join(names)]
            for i in rows:
                cells = [(MARKERS[(i + j) % 3] if kind == "raw" else f"{medians[j]:g}") if np.isnan(X[i, j])
                         else f"{X[i, j]:g}" for j in range(len(names))]
                lines.append(f"{data.ids[i]},{int(data.y[i])}," + ",".join(cells))
            path = root / f"{kind}_bank_{b}.csv"
            path.write_text("\n".join(lines) + "\n")
            out.append(path)
    return raw, filled, names


def run(root: Path, tag: str, paths: list[Path], names: list[str], rounds: int, seed: int, impute: bool,
        privacy: dict[str, Any] | None = None) -> dict[str, Any]:
    features = [{"name": n, "bounds": BOUNDS[n], **({"impute": "median"} if impute else {})} for n in names]
    config = {"run": {"name": f"imp-{tag}", "rounds": rounds, "seed": seed, "store": f"sqlite:///{root / tag}.db"},
              "training": {"batch_size": 64, "learning_rate": 0.05},
              "schema": {"id": "id", "label": "y", "missing": ["?"], "features": features},
              "parties": [{"name": f"bank_{i}", "path": str(p)} for i, p in enumerate(paths)]}
    if privacy:
        config["privacy"] = privacy
    warnings: list[str] = []
    started = time.perf_counter()
    finished = start_run(parse_config(config), Store.open(config["run"]["store"]),
                         lambda stage, info: warnings.append(str(info["message"])) if stage == "warning" else None)
    seconds = time.perf_counter() - started
    store = Store.open(config["run"]["store"])
    model = store.get_model(f"imp-{tag}")
    fill = model.arrays.get("scaler.impute")
    return {"auc": float(finished.result.final_metrics.get("auc", float("nan"))), "seconds": round(seconds, 2),
            "warning": bool(warnings), "fill": None if fill is None else fill.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--banks", type=int, default=3)
    parser.add_argument("--missing", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw, filled, names = write_banks(root, args.banks, args.missing, args.seed)
        pooled = np.vstack([np.genfromtxt(p, delimiter=",", skip_header=1, missing_values=MARKERS,
                                          filling_values=np.nan)[:, 2:] for p in raw])
        exact, iqr = np.nanmedian(pooled, axis=0), np.subtract(*np.nanpercentile(pooled, [75, 25], axis=0))
        rows: dict[str, Any] = {
            "federated median": run(root, "fed", raw, names, args.rounds, args.seed, True),
            "oracle (pooled exact medians)": run(root, "oracle", filled, names, args.rounds, args.seed, False),
        }
        dp_bounds = {n: BOUNDS[n] for n in names}
        for tag, dp1 in (("readme-dp1-10", {"noise_multiplier": 10.0, "bounds": {"*": [0, 1]}}),
                         ("dp1-auto", {"noise_multiplier": "auto", "bounds": dp_bounds})):
            privacy = {"epsilon": 1.0, "dp1": dp1, "dp2": {"noise_multiplier": "auto"}}
            rows[f"DP eps=1: {tag}"] = run(root, tag, raw, names, args.rounds, args.seed, True, privacy)
    for row in rows.values():
        fill = row.pop("fill")
        if fill is not None:  # the whole pooled table (train and holdout): a slight mismatch with the training rows
            error = np.abs(np.array(fill) - exact) / np.where(iqr > 0, iqr, 1.0)
            row["median error/IQR: median, max (column)"] = (f"{np.median(error):.3f}, {error.max():.3f} "
                                                             f"({names[int(error.argmax())]})")
    out = {"command": "bench/imputation_bench.py " + " ".join(sys.argv[1:]), "machine": platform.platform(),
           "cpus": os.cpu_count(), "args": vars(args), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "imputation.json").write_text(json.dumps(out, indent=2))
    for name, row in rows.items():
        print(f"{name:36s} " + "  ".join(f"{k} {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
