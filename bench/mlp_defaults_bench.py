"""MLP defaults vs logistic regression on the shared public credit datasets (issue 13 item 8).

Both models run with Sampan's DEFAULTS (no [training] section: only `model.kind` differs), federated over the
same parties, the same seed-fixed split and rounds, for several seeds; the AUC is the federated evaluation on the
pooled holdout. Run from the repository root:
    .venv/bin/python bench/mlp_defaults_bench.py [--seeds 3] [--datasets german south_german taiwan]
Prints a side-by-side table (mean and min/max over seeds) and writes bench/results/mlp_defaults.json. The
"MLP He" column is the same MLP with the earlier He initialisation (patched in for those runs only), for the
before/after comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sampan.config import parse_config
from sampan.models.mlp import MLP
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/work/shared/data")


def _auc(dataset: str, kind: str, seed: int, store: Store, report_dir: str, extra: dict[str, Any]) -> float:
    config = parse_config({"run": {"name": f"{dataset}-{kind}-{seed}", "seed": seed, "report_dir": report_dir},
                           "source": {"kind": dataset, "path": str(DATA), "n_parties": 3},
                           **extra, "model": {**extra.get("model", {}), "kind": kind}})
    return float(start_run(config, store).final_metrics["auc"])


def _he_init(self: MLP, rng: np.random.Generator) -> np.ndarray:
    """The MLP's earlier default initialisation (He normal weights, zero biases)."""
    params = np.zeros(self.n_params)
    for (ws, _), (w_shape, _) in zip(self._slices, self._shapes, strict=True):
        params[ws] = rng.normal(0.0, np.sqrt(2.0 / w_shape[0]), size=w_shape[0] * w_shape[1])
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=["german", "south_german", "taiwan"])
    parser.add_argument("--extra", default="{}", help="JSON config sections added to BOTH runs (e.g. a [training])")
    parser.add_argument("--mlp-extra", default="{}", help="JSON config sections added to the MLP runs only (to try "
                        "candidate defaults)")
    args = parser.parse_args()
    extra, mlp_extra = json.loads(args.extra), json.loads(args.mlp_extra)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{tmp}/runs.db")
        print(f"{'dataset':14s} {'LR AUC':>22s} {'MLP He (before)':>22s} {'MLP default':>22s} {'MLP - LR':>9s} "
              f"{'LR s':>6s} {'MLP s':>6s}")
        span = "{:.4f} [{:.4f}, {:.4f}]"
        for dataset in args.datasets:
            row: dict[str, Any] = {}
            for column, kind in (("logistic", "logistic"), ("mlp_he", "mlp"), ("mlp", "mlp")):
                started = time.perf_counter()
                sections = {**extra, **(mlp_extra if kind == "mlp" else {})}
                default_init = MLP.init_params
                if column == "mlp_he":
                    MLP.init_params = _he_init  # type: ignore[method-assign]
                try:
                    aucs = [_auc(dataset, kind, seed, store, f"{tmp}/rep", sections)
                            for seed in range(1, args.seeds + 1)]
                finally:
                    MLP.init_params = default_init  # type: ignore[method-assign]
                row[column] = {"aucs": aucs, "mean": statistics.fmean(aucs),
                               "seconds": (time.perf_counter() - started) / args.seeds}
            results[dataset] = row
            cells = [span.format(row[c]["mean"], min(row[c]["aucs"]), max(row[c]["aucs"]))
                     for c in ("logistic", "mlp_he", "mlp")]
            print(f"{dataset:14s} {cells[0]:>22s} {cells[1]:>22s} {cells[2]:>22s} "
                  f"{row['mlp']['mean'] - row['logistic']['mean']:+9.4f} {row['logistic']['seconds']:6.1f} "
                  f"{row['mlp']['seconds']:6.1f}")
    out = ROOT / "bench" / "results" / "mlp_defaults.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seeds": args.seeds, "extra": extra, "mlp_extra": mlp_extra, "results": results},
                              indent=2))


if __name__ == "__main__":
    main()
