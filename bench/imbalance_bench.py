"""Class weights, decision thresholds and fairness by group on the shared datasets (issue 13 items 3 and 8).

For each dataset (split iid over 3 parties, Sampan's defaults, logistic regression, seed 1): the unweighted and the
``class_weight = "balanced"`` model side by side (AUC; recall and precision at PD 0.5; the threshold each rule
picks on the pooled holdout histogram, with its approval rate and recall), then the per-group table of the
balanced run and the run time with and without `[evaluation] groups` (one more exchange). Run from the root:
    .venv/bin/python bench/imbalance_bench.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from sampan.config import parse_config
from sampan.metrics.thresholds import choose_threshold, confusion_at
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store

DATA = Path("/work/shared/data")
GROUPS = {"taiwan": {"groups": ["SEX", "AGE"], "group_bands": {"SEX": [1.5], "AGE": [30, 40, 50]}},
          "german": {"groups": ["personal_status_sex", "age"], "group_bands": {"age": [25, 35, 50]}}}


def _run(store: Store, tmp: str, dataset: str, training: dict[str, Any], evaluation: dict[str, Any]) -> Any:
    config = parse_config({"run": {"name": f"{dataset}-imb", "seed": 1, "report_dir": f"{tmp}/rep"},
                           "source": {"kind": dataset, "path": str(DATA), "n_parties": 3},
                           "training": training, "evaluation": evaluation})
    started = time.perf_counter()
    finished = start_run(config, store)
    return finished, time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{tmp}/runs.db")
        for dataset, groups in GROUPS.items():
            print(f"\n== {dataset}")
            print(f"{'weights':10s} {'AUC':>7s} {'rec@0.5':>8s} {'prec@0.5':>9s}  rule: threshold / approval / recall")
            for name, training in (("none", {}), ("balanced", {"class_weight": "balanced"})):
                finished, _ = _run(store, tmp, dataset, training, {})
                histogram = finished.result.outcome.histogram
                at_half = confusion_at(histogram, 0.5)
                rules = []
                for rule in ("max_ks", "approval_rate", "cost_ratio"):
                    c = choose_threshold(histogram, rule)
                    rules.append(f"{rule} {c.threshold:.2f} / {c.confusion.approval_rate:.2f} / "
                                 f"{c.confusion.recall:.2f}")
                print(f"{name:10s} {finished.final_metrics['auc']:7.4f} {at_half.recall or 0:8.3f} "
                      f"{at_half.precision or 0:9.3f}  " + "; ".join(rules))
            plain, seconds_plain = _run(store, tmp, dataset, {"class_weight": "balanced"}, {})
            grouped, seconds_groups = _run(store, tmp, dataset, {"class_weight": "balanced"}, groups)
            info = grouped.result.info["groups"]
            print(f"groups at threshold {info['threshold']:.2f} (max_ks): run {seconds_plain:.1f} s without, "
                  f"{seconds_groups:.1f} s with groups")
            for row in info["rows"]:
                shown = "suppressed" if row["suppressed"] else (
                    f"n={row['count']:5d} bad={row['bad_rate']:.3f} auc={row['auc'] or float('nan'):.3f} "
                    f"approve={row['approval_rate']:.3f}")
                print(f"  {row['column']:22s} {row['level']:12s} {shown}")
            for column, d in info["disparity"].items():
                print(f"  disparity {column}: max/min approval {d['ratio']:.3f} ({d['highest']} vs {d['lowest']})")


if __name__ == "__main__":
    main()
