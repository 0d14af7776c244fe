"""Membership-inference audit of non-private vs DP (ε = 1) federated models on Taiwan default.

Run from the repository root:  .venv/bin/python bench/audit_bench.py [--shadows 16]
For each model (logistic regression, MLP 23-32-1) it trains the non-private federated model and the
same model with DP-SGD at ε = 1 (δ = 1e-5, noise calibrated to the whole run), then runs
`sampan audit` (loss-threshold and LiRA with shadow models). Reports TPR at 0.1% FPR and the
empirical ε lower bound, which must not exceed the claimed ε. Results: bench/results/audit.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sampan.config import parse_config
from sampan.runtime.audit_run import audit_run
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store

ROOT = Path(__file__).resolve().parent.parent


def config(model: str, epsilon: float | None, report_dir: str) -> dict:
    spec = {"logistic": {"kind": "logistic"}, "mlp": {"kind": "mlp", "hidden": [32]}}[model]
    data = {"run": {"name": f"audit-{model}-{epsilon}", "rounds": 20, "seed": 7, "eval_every": 20,
                    "report_dir": report_dir},
            "model": spec, "training": {"learning_rate": 0.05, "batch_size": 64},
            "source": {"kind": "taiwan", "n_parties": 5, "partition": "dirichlet", "alpha": 0.5}}
    if epsilon is not None:
        data["privacy"] = {"epsilon": epsilon, "delta": 1e-5, "dp2": {"noise_multiplier": "auto", "max_grad_norm": 1.0}}
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shadows", type=int, default=16)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{Path(tmp) / 'audit.db'}")
        for model in ("logistic", "mlp"):
            for epsilon in (None, 1.0):
                finished = start_run(parse_config(config(model, epsilon, tmp)), store)
                started = time.perf_counter()
                report = audit_run(store, finished.outcome.run_id, n_shadow=args.shadows)
                for attack in report["attacks"]:
                    rows.append({"model": model, "epsilon": epsilon, "auc_model": finished.outcome.final_metrics["auc"],
                                 "attack": attack["name"], "attack_auc": attack["auc"],
                                 "tpr_at_1pct_fpr": float(attack["tpr_at_fpr"]["0.01"]),
                                 "tpr_at_0.1pct_fpr": float(attack["tpr_at_fpr"]["0.001"]),
                                 "epsilon_lower_bound": float(attack["epsilon_lower_bound"]),
                                 "epsilon_lower_bound_ci95": [float(v) for v in attack["epsilon_lower_bound_ci95"]],
                                 "claimed_epsilon": report["target"]["claimed_epsilon"],
                                 "audit_seconds": time.perf_counter() - started})
                    r = rows[-1]
                    claimed = "none" if r["claimed_epsilon"] is None else f"{r['claimed_epsilon']:.3f}"
                    print(f"{model:8s} eps={str(epsilon):4s} {r['attack']:14s} attack AUC {r['attack_auc']:.3f} "
                          f"TPR@0.1%FPR {r['tpr_at_0.1pct_fpr']:.4f} eps_lb {r['epsilon_lower_bound']:.3f} "
                          f"CI {r['epsilon_lower_bound_ci95'][0]:.3f}..{r['epsilon_lower_bound_ci95'][1]:.3f} "
                          f"claimed {claimed}", flush=True)
    out = ROOT / "bench" / "results" / "audit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": datetime.now(UTC).isoformat(timespec="seconds"),
                               "shadows": args.shadows, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
