"""Issue 15 scale: one horizontal party's peak memory and seconds per round of logistic regression, 1M-10M rows.

The party runs in its own process (a fresh Python started by this script), so its peak RSS (the kernel's VmHWM)
is the party's alone: its table, its train/test split (`sampan.horizontal.simulation.split_parties`, the
simulation's split), and its handlers (`HorizontalParty`: describe, stats, then per round a `fit` of one local
epoch and an `evaluate` of the new model on its holdout). The coordinator's side of a one-party FedAvg (the
scaler from the party's moments, params += update) runs in the same process: a few vectors of 31 floats.

    .venv/bin/python bench/horizontal_scale_bench.py --rows 1000000
    flock /work/helpers/bench.lock .venv/bin/python bench/horizontal_scale_bench.py --rows 5000000 10000000

`run_horizontal_lr(n_rows, features=30, rounds=2) -> dict` is the reusable entry point (bench/scale_bench.py).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BLOCK = 250_000
MB = 2**20


def _status(field: str) -> int:
    """VmRSS / VmHWM of this process in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    """Reset this process's VmHWM to its current RSS (Linux ``clear_refs`` 5), to measure a phase's own peak."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _table(n_rows: int, features: int, seed: int, dtype: str = "float32") -> Any:
    """A synthetic party table built block by block in ``dtype`` (float32: the compact form `load_table` may
    choose; `PartyData` keeps it), labels from a logistic model over the features (a learnable signal,
    Bayes AUC ~0.8)."""
    from sampan.data import PartyData

    probe = PartyData("probe", np.array(["a"]), np.zeros((1, 1), dtype=dtype), None, ["f"])
    dtype = str(probe.X.dtype)  # an older PartyData made every matrix float64
    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, 1.0, features) / math.sqrt(features)
    X = np.empty((n_rows, features), dtype=dtype)
    y = np.empty(n_rows, dtype=np.int8)
    for start in range(0, n_rows, BLOCK):
        stop = min(start + BLOCK, n_rows)
        block = rng.normal(0.0, 1.0, (stop - start, features))
        X[start:stop] = block * 3.0 + 10.0  # not standardised: the party's scaler matters
        y[start:stop] = rng.random(stop - start) < 1.0 / (1.0 + np.exp(-(block @ w) * 1.5 + 1.5))
        del block
    ids = np.array([f"C{i:09d}" for i in range(n_rows)], dtype=object)
    return PartyData("bank", ids, X, y, [f"x{j}" for j in range(features)])


def _party_run(n_rows: int, features: int, rounds: int, batch_size: int, seed: int,
               dtype: str = "float32") -> dict[str, Any]:
    """Runs inside the party's own process: build, split, then describe, stats and ``rounds`` rounds."""
    from sampan.horizontal.party import HorizontalParty
    from sampan.horizontal.simulation import split_parties
    from sampan.wire import Message

    t0 = time.perf_counter()
    table = {"bank": _table(n_rows, features, seed, dtype)}
    handed = "consume" in inspect.signature(split_parties).parameters  # False when run against an older tree
    splits = split_parties(table, 0.2, seed, consume=True) if handed else split_parties(table, 0.2, seed)
    del table
    party = HorizontalParty("bank", splits["bank"].train, splits["bank"].test)
    del splits
    load_s = time.perf_counter() - t0
    rss_loaded, peak_loading = _status("VmRSS"), _status("VmHWM")
    _reset_peak()  # from here on VmHWM is the peak of the protocol (describe, stats, rounds)

    def ask(kind: str, step: int, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Message:
        handler = {"describe": party.describe, "stats": party.stats, "fit": party.fit, "evaluate": party.evaluate}
        return handler[kind](Message("bench", step, "coordinator", "bank", kind, arrays, meta))

    t1 = time.perf_counter()
    info = ask("describe", 0, {}, {}).meta
    stats = ask("stats", 0, {}, {})
    n = float(stats.meta["n"])
    mean = stats.arrays["sum"] / n
    scale = np.sqrt(np.maximum(stats.arrays["sum_sq"] / n - mean**2, 0.0))
    scaler = {"mean": mean, "scale": np.where(scale > 1e-12, scale, 1.0)}
    setup_s = time.perf_counter() - t1
    model = {"kind": "logistic", "n_features": features}
    train = {"epochs": 1, "batch_size": batch_size, "learning_rate": 0.05}
    params = np.random.default_rng(seed).normal(0.0, 1e-3, features + 1)
    per_round: list[dict[str, float]] = []
    for r in range(1, rounds + 1):
        t = time.perf_counter()
        fit = ask("fit", r, {"params": params, **scaler}, {"model": model, "train": train, "seed": seed + r})
        params = params + fit.arrays["update"]
        t_fit = time.perf_counter() - t
        ev = ask("evaluate", r, {"params": params, **scaler}, {"model": model})
        per_round.append({"fit_s": t_fit, "evaluate_s": time.perf_counter() - t - t_fit,
                          "round_s": time.perf_counter() - t, "auc": float(ev.meta["metrics"].get("auc") or 0.0),
                          "loss": float(fit.meta["loss"])})
    return {"rows": n_rows, "features": features, "dtype": dtype, "rounds": rounds, "batch_size": batch_size,
            "n_train": info["n_train"], "n_test": info["n_test"], "x_dtype": str(party.train_data.X.dtype),
            "load_split_s": round(load_s, 2), "setup_s": round(setup_s, 2),
            "round_s": round(float(np.mean([p["round_s"] for p in per_round])), 2),
            "fit_s": round(float(np.mean([p["fit_s"] for p in per_round])), 2),
            "evaluate_s": round(float(np.mean([p["evaluate_s"] for p in per_round])), 2),
            "auc": round(per_round[-1]["auc"], 4),
            "rss_after_split_mb": round(rss_loaded / MB, 1), "peak_loading_mb": round(peak_loading / MB, 1),
            "peak_protocol_mb": round(_status("VmHWM") / MB, 1),
            "peak_rss_mb": round(max(peak_loading, _status("VmHWM")) / MB, 1),
            "table_mb": round((party.train_data.X.nbytes + party.test_data.X.nbytes) / MB, 1)}


def run_horizontal_lr(n_rows: int, features: int = 30, rounds: int = 2, *, batch_size: int = 256,
                      seed: int = 7, dtype: str = "float32", env: dict[str, str] | None = None) -> dict[str, Any]:
    """One party's horizontal LR in a fresh process: peak RSS (MB) and seconds per round (fit + evaluate).
    ``dtype``: the party's matrix (float32, the compact form, or float64); ``env``: e.g. a PYTHONPATH to
    measure another tree of the code side by side."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(n_rows), str(features),
           str(rounds), str(batch_size), str(seed), dtype]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False,
                          env=None if env is None else {**os.environ, **env})
    if done.returncode != 0:
        raise RuntimeError(f"the party process failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        n_rows, features, rounds, batch_size, seed = (int(v) for v in sys.argv[2:7])
        print(json.dumps(_party_run(n_rows, features, rounds, batch_size, seed, sys.argv[7])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--before", metavar="SRC", help="also run each size against this source tree (a src/ "
                        "folder of an earlier commit), side by side")
    args = parser.parse_args()
    results = []
    for n in args.rows:
        results.append(run_horizontal_lr(n, args.features, args.rounds, batch_size=args.batch_size,
                                         dtype=args.dtype))
        print(json.dumps(results[-1]), flush=True)
        if args.before:
            before = run_horizontal_lr(n, args.features, args.rounds, batch_size=args.batch_size, dtype=args.dtype,
                                       env={"PYTHONPATH": args.before})
            print(json.dumps({"tree": "before", **before}), flush=True)
    if len(results) > 1:
        sizes = [r["rows"] for r in results]
        for key in ("peak_rss_mb", "round_s"):
            slope = np.polyfit(np.log(sizes), np.log([r[key] for r in results]), 1)[0]
            print(f"growth exponent of {key}: {slope:.3f}")


if __name__ == "__main__":
    main()
