"""Thousands of simulated parties' local training on a compute engine: one process vs Ray with N local workers.

Each party holds its own rows; one FedAvg round = every party trains the global MLP locally (Sampan's own
`sampan.models.train`, one epoch) and the n-weighted updates are summed. The parties are blocks of party
indices (`row_blocks` over parties, fixed by the data), mapped with `engine.map_blocks` and summed with
`reduce_in_order`, so the round's aggregate is the same bytes on both engines (checked here).

Run from the repository root (needs the `ray` extra; may use > 2 GB at 5,000 parties, so hold the lock):
    flock /work/helpers/bench.lock .venv/bin/python bench/ray_parties_bench.py --parties 1000 5000 --workers 2
Results are printed and written to bench/results/ray_parties.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sampan.compute import LocalEngine, reduce_in_order, row_blocks
from sampan.models import model_from_config
from sampan.models.local_training import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
N_FEATURES, ROWS, HIDDEN = 23, 200, (32,)
MODEL = {"kind": "mlp", "n_features": N_FEATURES, "hidden": list(HIDDEN)}
TRAIN = TrainConfig(epochs=1, batch_size=16, learning_rate=0.05)


def make_parties(n_parties: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every party's own standardised rows and labels (a logistic ground truth, party-specific shift), stored as
    one matrix with party offsets: three arrays a Ray worker maps without copying, whatever the party count."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=N_FEATURES)
    X = np.empty((n_parties * ROWS, N_FEATURES))
    y = np.empty(n_parties * ROWS)
    for p in range(n_parties):
        rows = slice(p * ROWS, (p + 1) * ROWS)
        X[rows] = rng.normal(loc=rng.normal(scale=0.3, size=N_FEATURES), size=(ROWS, N_FEATURES))
        y[rows] = (rng.random(ROWS) < 1 / (1 + np.exp(-(X[rows] @ truth) / 3))).astype(np.float64)
    return X, y, np.arange(0, (n_parties + 1) * ROWS, ROWS)


def fit_parties(parties: tuple[np.ndarray, np.ndarray, np.ndarray], start: int, stop: int, params: np.ndarray,
                round_seed: int) -> tuple[np.ndarray, float]:
    """Parties ``start..stop`` train locally in order; their n-weighted update sum and n (a block of the round)."""
    X_all, y_all, offsets = parties
    model = model_from_config(MODEL)
    total, rows = np.zeros_like(params), 0.0
    for index in range(start, stop):
        X, y = X_all[offsets[index]:offsets[index + 1]], y_all[offsets[index]:offsets[index + 1]]
        result = train(model, params, X, y, TRAIN, np.random.default_rng([round_seed, index]))
        total += len(X) * (result.params - params)
        rows += len(X)
    return total, rows


def one_round(engine: Any, data: Any, n_parties: int, params: np.ndarray, round_seed: int,
              per_task: int) -> np.ndarray:
    parts = engine.map_blocks(fit_parties, data, row_blocks(n_parties, per_task), params, round_seed)
    total = reduce_in_order([p[0] for p in parts])
    return params + total / reduce_in_order([p[1] for p in parts])


def measure(engine: Any, parties: tuple[np.ndarray, np.ndarray, np.ndarray], rounds: int,
            per_task: int) -> dict[str, Any]:
    params = model_from_config(MODEL).init_params(np.random.default_rng(0))
    t0 = time.perf_counter()
    data = engine.put(parties)
    put_s = time.perf_counter() - t0
    times = []
    for r in range(rounds):
        t0 = time.perf_counter()
        params = one_round(engine, data, len(parties[2]) - 1, params, r, per_task)
        times.append(time.perf_counter() - t0)
    return {"put_seconds": put_s, "round_seconds": times, "params_sha": params.tobytes().hex()[:16],
            "params": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parties", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--per-task", type=int, default=250, help="parties per Ray task (a block of parties)")
    args = parser.parse_args()
    from sampan.compute.ray_engine import RayEngine

    t0 = time.perf_counter()
    ray_engine = RayEngine(num_workers=args.workers)
    start_s = time.perf_counter() - t0
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                               "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
                                          f"Python {platform.python_version()}, numpy {np.__version__}",
                               "ray_start_seconds": start_s, "workers": args.workers, "rows_per_party": ROWS,
                               "model": MODEL, "runs": []}
    try:
        for n in args.parties:
            parties = make_parties(n)
            local = measure(LocalEngine(), parties, args.rounds, args.per_task)
            ray = measure(ray_engine, parties, args.rounds, args.per_task)
            same = local.pop("params").tobytes() == ray.pop("params").tobytes()
            run = {"parties": n, "local": local, "ray": ray, "identical_model": same,
                   "speedup_last_round": local["round_seconds"][-1] / ray["round_seconds"][-1],
                   "driver_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
            results["runs"].append(run)
            print(f"{n:5d} parties: local {local['round_seconds'][-1]:.2f}s/round, Ray {args.workers} workers "
                  f"{ray['round_seconds'][-1]:.2f}s/round (first {ray['round_seconds'][0]:.2f}s, put "
                  f"{ray['put_seconds']:.2f}s), speed-up {run['speedup_last_round']:.2f}x, identical model: {same}",
                  flush=True)
    finally:
        ray_engine.close()
    print(f"Ray start-up {start_s:.1f}s")
    out = ROOT / "bench" / "results" / "ray_parties.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
