"""Horizontal FL benchmark: federated vs pooled (AUC and wall time), Flower comparison, 1,000 parties.

Run from the repository root (Flower, optional, only in the benchmark venv):
    .venv-bench/bin/python bench/horizontal_bench.py            # everything
    .venv/bin/python bench/horizontal_bench.py --skip-flower    # without Flower
Ratios are measured side by side in one process run; absolute seconds vary on a shared machine.
Results are printed and written to bench/results/horizontal.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sampan.config import RunConfig, parse_config
from sampan.core.workflow import RunContext
from sampan.horizontal.simulation import load_splits, pooled
from sampan.horizontal.workflow import HorizontalWorkflow
from sampan.metrics import binary_metrics, roc_auc
from sampan.models import model_from_config
from sampan.runtime.baselines import train_pooled
from sampan.runtime.federation import build_inprocess_federation
from sampan.runtime.recorder import StoreRecorder
from sampan.runtime.seeds import derive_rng
from sampan.runtime.store import Store

ROOT = Path(__file__).resolve().parent.parent
SEED = 7
MODELS: dict[str, dict[str, Any]] = {
    "logistic": {"model": {"kind": "logistic"},
                 "training": {"learning_rate": 0.05, "batch_size": 64, "local_epochs": 1}},
    "mlp": {"model": {"kind": "mlp", "hidden": [32]},
            "training": {"learning_rate": 0.05, "batch_size": 64, "local_epochs": 1}},
    # FedAvg with server momentum (FedAvgM, Hsu et al. 2019): same parties, same local training.
    "mlp-fedavgm": {"model": {"kind": "mlp", "hidden": [32]},
                    "training": {"learning_rate": 0.05, "batch_size": 64, "local_epochs": 1},
                    "strategy": {"name": "fedavg", "server_momentum": 0.7}},
    # Plain FedAvg with K = 15 local minibatches per round (McMahan's E < 1 epoch): less client drift
    # per round, more rounds; the pooled model gets the same total minibatches (100 x 5 x 15 = 20 epochs).
    "mlp-fedavg-k15": {"model": {"kind": "mlp", "hidden": [32]},
                       "training": {"learning_rate": 0.3, "batch_size": 64, "local_steps": 15},
                       "rounds": 100},
}
FLOWER_MODELS = ("logistic", "mlp")


def taiwan_config(model: str, rounds: int, eval_every: int, workers: int = 1) -> RunConfig:
    spec = dict(MODELS[model])
    if "rounds" in spec:  # a variant defined by its own number of rounds
        eval_every = spec["rounds"] if eval_every == rounds else eval_every
        rounds = spec.pop("rounds")
    return parse_config({
        "run": {"name": f"bench-taiwan-{model}", "rounds": rounds, "seed": SEED, "eval_every": eval_every,
                "workers": workers},
        "strategy": {"name": "fedavg"},
        **spec,
        "source": {"kind": "taiwan", "n_parties": 5, "partition": "dirichlet", "alpha": 0.5},
    })


def federated_run(config: RunConfig, store_dir: Path) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
    """The full Sampan runtime (wire encoding, SQLite checkpoint every round); data loading excluded."""
    transport, _ = build_inprocess_federation(config, SEED)
    store = Store.open(f"sqlite:///{store_dir / f'{time.monotonic_ns()}.db'}")
    run_id = store.create_run(name=config.run.name, workflow="horizontal", seed=SEED, config=config.to_dict(),
                              total_rounds=config.run.rounds)
    started = time.perf_counter()
    try:
        ctx = RunContext(run_id, SEED, config, transport, StoreRecorder(store, run_id))
        outcome = HorizontalWorkflow(config).run(ctx).outcome
        seconds = time.perf_counter() - started
    finally:
        transport.close()
    store.close()
    return seconds, outcome.params, outcome.scaler


def test_auc(config: RunConfig, params: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> float:
    splits = load_splits(config, SEED)
    X, y = pooled(splits, "test")
    model = model_from_config({**config.model.model_dump(), "n_features": X.shape[1]}
                              if config.model.kind == "mlp" else {"kind": "logistic", "n_features": X.shape[1]})
    return roc_auc(y, model.predict_proba(params, (X - mean) / scale))


def accuracy_and_time(model: str, rounds: int, repeats: int, store_dir: Path) -> dict[str, Any]:
    config = taiwan_config(model, rounds, eval_every=rounds)
    splits = load_splits(config, SEED)
    X_test, y_test = pooled(splits, "test")
    fed_times, pooled_times = [], []
    for _ in range(repeats):  # interleaved so both see the same machine load
        seconds, fed_params, scaler = federated_run(config, store_dir)
        fed_times.append(seconds)
        started = time.perf_counter()  # pooled: train, then score the test rows (as the federated run does)
        pooled_model, pooled_params, mean, scale = train_pooled(config, splits, SEED)
        binary_metrics(y_test, pooled_model.predict_proba(pooled_params, (X_test - mean) / scale))
        pooled_times.append(time.perf_counter() - started)
    eval_config = taiwan_config(model, rounds, eval_every=1)
    eval_seconds = min(federated_run(eval_config, store_dir)[0] for _ in range(repeats))
    parallel = [federated_run(taiwan_config(model, rounds, eval_every=rounds, workers=2), store_dir)
                for _ in range(repeats)]
    parallel_s = min(p[0] for p in parallel)
    assert np.array_equal(parallel[0][1], fed_params), "2-worker run must equal the sequential one"
    fed_auc = test_auc(config, fed_params, scaler["mean"], scaler["scale"])
    pooled_auc = test_auc(config, pooled_params, mean, scale)
    # The minimum of interleaved repeats is the least-disturbed measurement of each on a shared VM.
    fed_s, pooled_s = min(fed_times), min(pooled_times)
    return {"model": model, "rounds": config.run.rounds, "parties": 5, "partition": "dirichlet alpha=0.5",
            "federated_auc": fed_auc, "pooled_auc": pooled_auc, "auc_gap": fed_auc - pooled_auc,
            "federated_seconds": fed_s, "pooled_seconds": pooled_s, "time_ratio": fed_s / pooled_s,
            "federated_seconds_with_eval_every_round": eval_seconds,
            "time_ratio_with_eval_every_round": eval_seconds / pooled_s, "repeats": repeats,
            "time_ratio_of_medians": statistics.median(fed_times) / statistics.median(pooled_times),
            "federated_seconds_2_workers": parallel_s, "time_ratio_2_workers": parallel_s / pooled_s,
            "federated_seconds_all": fed_times, "pooled_seconds_all": pooled_times}


def flower_comparison(model: str, rounds: int, store_dir: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "bench"))
    from flower_task import run_flower  # only importable where flwr is installed

    config = taiwan_config(model, rounds, eval_every=rounds)
    splits = load_splits(config, SEED)
    X_all, _ = pooled(splits, "train")
    mean, scale = X_all.mean(axis=0), X_all.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    parties = [((s.train.X - mean) / scale, s.train.y) for s in splits.values()]
    model_config = {"kind": config.model.kind, "n_features": X_all.shape[1]}
    if config.model.kind == "mlp":
        model_config["hidden"] = list(config.model.hidden)
    init = model_from_config(model_config).init_params(derive_rng(SEED, "init"))
    t = config.training
    train_config = {"epochs": t.local_epochs, "batch_size": t.batch_size, "learning_rate": t.learning_rate,
                    "optimizer": t.optimizer, "l2": t.l2}
    sampan_seconds, sampan_params, scaler = federated_run(config, store_dir)
    flower = run_flower(parties, model_config, train_config, rounds, SEED, init)
    sampan_seconds_2, _, _ = federated_run(config, store_dir)  # bracket Flower to even out load
    sampan_s = (sampan_seconds + sampan_seconds_2) / 2
    parallel_s = min(federated_run(taiwan_config(model, rounds, eval_every=rounds, workers=2), store_dir)[0]
                     for _ in range(2))
    return {"model": model, "rounds": rounds, "flwr_version": flower.get("flwr_version"), "api": flower.get("api"),
            "sampan_seconds": sampan_s, "flower_seconds": flower["seconds"],
            "flower_seconds_rounds_only": flower.get("seconds_rounds"),
            "speedup_total": flower["seconds"] / sampan_s,
            "speedup_rounds_only": (flower["seconds_rounds"] / sampan_s) if flower.get("seconds_rounds") else None,
            "sampan_seconds_2_workers": parallel_s,
            "speedup_2_workers_total": flower["seconds"] / parallel_s,
            "speedup_2_workers_rounds_only": (flower["seconds_rounds"] / parallel_s) if flower.get("seconds_rounds")
            else None,
            "sampan_auc": test_auc(config, sampan_params, scaler["mean"], scaler["scale"]),
            "flower_auc": test_auc(config, flower["params"], mean, scale)}


SCALE_CHILD = r"""
import json, resource, sys, time, tracemalloc
import numpy as np
from sampan.config import parse_config
from sampan.runtime.federation import build_inprocess_federation
from sampan.core.workflow import RunContext
from sampan.horizontal.workflow import HorizontalWorkflow
from sampan.runtime.recorder import StoreRecorder
from sampan.runtime.store import Store
n_parties, hidden, store_path = int(sys.argv[1]), [int(h) for h in sys.argv[2].split(",")], sys.argv[3]
trace, workers = sys.argv[4] == "trace", int(sys.argv[5])
config = parse_config({"run": {"rounds": 1, "seed": 3, "eval_every": 1, "workers": workers},
                       "model": {"kind": "mlp", "hidden": hidden},
                       "training": {"batch_size": 16, "learning_rate": 0.05},
                       "data": {"test_fraction": 0.25},
                       "source": {"kind": "taiwan", "n_parties": n_parties, "partition": "iid"}})
t0 = time.perf_counter()
transport, splits = build_inprocess_federation(config, 3)
setup_s = time.perf_counter() - t0
store = Store.open(f"sqlite:///{store_path}")
run_id = store.create_run(name="scale", workflow="horizontal", seed=3, config=config.to_dict(), total_rounds=1)
wf = HorizontalWorkflow(config)
ctx = RunContext(run_id, 3, config, transport, StoreRecorder(store, run_id))
if trace:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
t0 = time.perf_counter()
out = wf.run(ctx).outcome
round_s = time.perf_counter() - t0
transport.close()
peak = tracemalloc.get_traced_memory()[1] - base if trace else None
tracemalloc.stop()
print(json.dumps({"parties": n_parties, "hidden": hidden, "model_params": int(out.params.size),
                  "model_bytes": int(out.params.nbytes), "setup_seconds": setup_s, "round_seconds": round_s,
                  "traced_peak_bytes_during_round": peak,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "auc": out.final_metrics.get("auc")}))
"""


def scale_test(n_parties: int, hidden: str, store_dir: Path, workers: int = 1) -> dict[str, Any]:
    """One FedAvg round (setup + fit + evaluate) in fresh processes: one timed, one under tracemalloc.

    tracemalloc slows NumPy allocation, so time comes from the untraced run; the traced run's peak
    (allocations alive at once during the round, party data excluded) shows whether coordinator
    memory grows with parties x model size.
    """
    runs = []
    for mode in ("time", "trace"):
        result = subprocess.run([sys.executable, "-c", SCALE_CHILD, str(n_parties), hidden,
                                 str(store_dir / f"scale-{n_parties}-{hidden}-{mode}.db"), mode, str(workers)],
                                capture_output=True, text=True, check=True)
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    timed, traced = runs
    return {**timed, "workers": workers, "traced_peak_bytes_during_round": traced["traced_peak_bytes_during_round"],
            "seconds_per_party": timed["round_seconds"] / n_parties}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-flower", action="store_true")
    parser.add_argument("--only", choices=["accuracy", "flower", "scale"], default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                               "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
                                          f"Python {platform.python_version()}, numpy {np.__version__}"}
    with tempfile.TemporaryDirectory() as tmp:
        store_dir = Path(tmp)
        if args.only in (None, "accuracy"):
            results["accuracy_and_time"] = [accuracy_and_time(m, args.rounds, args.repeats, store_dir) for m in MODELS]
            for r in results["accuracy_and_time"]:
                print(f"{r['model']:15s} AUC federated {r['federated_auc']:.4f}  pooled {r['pooled_auc']:.4f}  "
                      f"gap {r['auc_gap']:+.4f}  time {r['federated_seconds']:.2f}s vs {r['pooled_seconds']:.2f}s "
                      f"(ratio {r['time_ratio']:.2f}; "
                      f"with per-round evaluation {r['time_ratio_with_eval_every_round']:.2f}; "
                      f"2 workers {r['time_ratio_2_workers']:.2f})",
                      flush=True)
        if args.only in (None, "flower") and not args.skip_flower:
            results["flower"] = [flower_comparison(m, args.rounds, store_dir) for m in FLOWER_MODELS]
            for r in results["flower"]:
                print(f"{r['model']:8s} Sampan {r['sampan_seconds']:.2f}s AUC {r['sampan_auc']:.4f} | Flower "
                      f"{r['flwr_version']} {r['flower_seconds']:.2f}s AUC {r['flower_auc']:.4f} | speed-up "
                      f"{r['speedup_total']:.1f}x total, {r['speedup_rounds_only'] or float('nan'):.1f}x rounds only; "
                      f"Sampan on 2 workers {r['sampan_seconds_2_workers']:.2f}s: "
                      f"{r['speedup_2_workers_total']:.1f}x / "
                      f"{r['speedup_2_workers_rounds_only'] or float('nan'):.1f}x",
                      flush=True)
        if args.only in (None, "scale"):
            results["scale"] = [scale_test(n, h, store_dir, w)
                                for n, h, w in ((100, "256,256", 1), (1000, "256,256", 1), (1000, "256,256", 2))]
            for r in results["scale"]:
                print(f"{r['parties']:5d} parties on {r['workers']} worker(s), "
                      f"MLP {r['model_params']:,} params ({r['model_bytes'] / 1e6:.1f} MB): "
                      f"round {r['round_seconds']:.2f}s, "
                      f"traced peak during round {r['traced_peak_bytes_during_round'] / 1e6:.1f} MB, "
                      f"process peak RSS {r['peak_rss_bytes'] / 1e9:.2f} GB", flush=True)
    out = ROOT / "bench" / "results" / "horizontal.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**previous, **results}, indent=2))  # --only updates its own sections
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
