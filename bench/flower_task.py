"""Run the same horizontal FL task in Flower's simulation, to compare wall time and AUC with Sampan.

Benchmark-only: Flower lives in the separate `.venv-bench` environment (see
`bench/requirements-flower.txt`) and is never a Sampan dependency. This module imports `flwr` lazily,
so it can be imported anywhere; only `run_flower` needs the bench venv.

Both sides run the *same* NumPy code: the model comes from `sampan.models.model_from_config` and
each client trains locally with `sampan.horizontal.train`. What differs is the orchestration:
Flower's Message API (`ServerApp` + `ClientApp`, message-based `flwr.serverapp.strategy.FedAvg`,
example-weighted), run in-process by `flwr.simulation.run_simulation` on the Ray backend.

Data hand-off: each party's arrays are written once to a temporary `.npz` (no pickle) and every
ClientApp loads its own partition by `partition-id`, cached per Ray worker process. Capturing the
arrays in the ClientApp closure instead would make Ray re-serialise all parties' data with every
message, which would bill a harness artefact to Flower.

Smoke run (5 parties x 2000 rows, 10 features, logistic, 3 rounds):

    /work/main/.venv-bench/bin/python bench/flower_task.py
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# Keep Flower and Ray offline and quiet. Must be set before `flwr`/`ray` are imported.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

API = "flwr.simulation.run_simulation + ServerApp/ClientApp (Message API) + flwr.serverapp.strategy.FedAvg"

# Per-process caches inside Ray workers (this module is imported by reference there).
_PARTY_CACHE: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
_MODEL_CACHE: dict[str, Any] = {}


def _load_party(data_dir: str, pid: int) -> tuple[np.ndarray, np.ndarray]:
    key = (data_dir, pid)
    if key not in _PARTY_CACHE:
        with np.load(Path(data_dir) / f"party_{pid}.npz", allow_pickle=False) as f:
            _PARTY_CACHE[key] = (f["X"], f["y"])
    return _PARTY_CACHE[key]


def _model(model_config_json: str) -> Any:
    if model_config_json not in _MODEL_CACHE:
        from sampan.models import model_from_config

        _MODEL_CACHE[model_config_json] = model_from_config(json.loads(model_config_json))
    return _MODEL_CACHE[model_config_json]


def _client_train(msg: Any, context: Any) -> Any:
    """ClientApp train handler: local epochs with Sampan's trainer, reply with the new local model."""
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

    from sampan.horizontal import TrainConfig, train

    t_start = time.time()  # wall clock: comparable with the driver's stamps across processes
    pid = int(context.node_config["partition-id"])
    cfg = msg.content["config"]
    round_number = int(cfg["server-round"])
    X, y = _load_party(str(cfg["data-dir"]), pid)
    model = _model(str(cfg["model-config"]))
    train_config = TrainConfig(**json.loads(str(cfg["train-config"])))
    params = msg.content["arrays"].to_numpy_ndarrays()[0]
    rng = np.random.default_rng(int(cfg["seed"]) + 1000 * round_number + pid)
    result = train(model, params, X, y, train_config, rng)
    content = RecordDict({
        "arrays": ArrayRecord([result.params]),
        "metrics": MetricRecord({"num-examples": len(X), "train-loss": float(result.mean_loss),
                                 "t-start": t_start, "t-end": time.time()}),
    })
    return Message(content=content, reply_to=msg)


def _make_client_app() -> Any:
    from flwr.clientapp import ClientApp

    app = ClientApp()
    app.train()(_client_train)
    return app


def _make_strategy(n_parties: int, stamps: dict[str, Any]) -> Any:
    from flwr.serverapp.strategy import FedAvg

    class TimedFedAvg(FedAvg):
        """FedAvg that timestamps rounds and refuses to average over failed clients."""

        def configure_train(self, server_round, arrays, config, grid):  # type: ignore[no-untyped-def]
            stamps.setdefault("first_round_start", time.time())
            return super().configure_train(server_round, arrays, config, grid)

        def aggregate_train(self, server_round, replies):  # type: ignore[no-untyped-def]
            replies = list(replies)
            errors = [m.error.reason for m in replies if m.has_error()]
            if errors or len(replies) != n_parties:
                raise RuntimeError(f"round {server_round}: {len(replies) - len(errors)}/{n_parties} clients "
                                   f"replied; errors: {errors[:3]}")
            stamps.setdefault("client_starts", []).append(
                min(float(next(iter(m.content.metric_records.values()))["t-start"]) for m in replies))
            arrays, metrics = super().aggregate_train(server_round, replies)
            stamps["last_round_end"] = time.time()
            stamps.setdefault("round_ends", []).append(stamps["last_round_end"])
            return arrays, metrics

    return TimedFedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,  # no federated evaluation: the caller evaluates the final params
        min_train_nodes=n_parties,
        min_evaluate_nodes=0,
        min_available_nodes=n_parties,
        weighted_by_key="num-examples",
    )


def run_flower(
    parties: list[tuple[np.ndarray, np.ndarray]],
    model_config: dict,
    train_config: dict,
    rounds: int,
    seed: int,
    init_params: np.ndarray,
    *,
    num_cpus: int | None = None,
    quiet: bool = True,
) -> dict:
    """Federated training of `model_config` over `parties` with Flower's simulation (FedAvg).

    Returns {"params", "seconds", "seconds_rounds", "seconds_startup", "seconds_stage",
    "round_seconds", "flwr_version", "ray_version", "api"}:
      seconds         wall time of the whole `run_simulation` call: Ray start-up, actor spawn, all
                      rounds, Ray shutdown;
      seconds_rounds  from the first client starting its round-1 training to the end of the last
                      round's aggregation (excludes Ray/actor start-up, which the server thread
                      otherwise sits through inside round 1);
      seconds_startup from the `run_simulation` call to that first client training start;
      round_seconds   per round, same origin for round 1, previous round's aggregation after that;
      seconds_stage   writing the party files beforehand (not part of `seconds`).
    Timestamps are wall clock (`time.time()`) because clients run in Ray worker processes.
    """
    import flwr
    import ray
    from flwr.app import ArrayRecord, ConfigRecord, Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from sampan.horizontal import TrainConfig
    from sampan.models import model_from_config

    if rounds < 1:
        raise ValueError(f"rounds must be >= 1 (got {rounds})")
    if not parties:
        raise ValueError("need at least one party")
    model = model_from_config(model_config)
    init = model.check_params(init_params).astype(np.float64, copy=True)
    TrainConfig(**train_config)  # fail fast here rather than inside a Ray worker
    n_parties = len(parties)
    cpus = num_cpus or os.cpu_count() or 1

    stamps: dict[str, Any] = {}
    out: dict[str, Any] = {}

    flwr_logger = logging.getLogger("flwr")
    old_level = flwr_logger.level
    if quiet:
        flwr_logger.setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="sampan-flower-") as data_dir:
        t_stage = time.perf_counter()
        for pid, (X, y) in enumerate(parties):
            np.savez(Path(data_dir) / f"party_{pid}.npz",
                     X=np.ascontiguousarray(X, dtype=np.float64), y=np.asarray(y))
        seconds_stage = time.perf_counter() - t_stage

        run_config = ConfigRecord({
            "data-dir": data_dir,
            "model-config": json.dumps(model_config, sort_keys=True),
            "train-config": json.dumps(train_config, sort_keys=True),
            "seed": int(seed),
        })
        server_app = ServerApp()

        @server_app.main()
        def _main(grid: Grid, context: Context) -> None:
            strategy = _make_strategy(n_parties, stamps)
            result = strategy.start(grid=grid, initial_arrays=ArrayRecord([init]), num_rounds=rounds,
                                    train_config=run_config)
            out["params"] = result.arrays.to_numpy_ndarrays()[0]

        backend_config = {
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {
                "num_cpus": cpus,
                "num_gpus": 0,
                "include_dashboard": False,
                "logging_level": "ERROR",
                "log_to_driver": not quiet,
                "configure_logging": True,
            },
        }
        t0_wall, t0 = time.time(), time.perf_counter()
        try:
            run_simulation(server_app=server_app, client_app=_make_client_app(), num_supernodes=n_parties,
                           backend_config=backend_config)  # type: ignore[arg-type]
        finally:
            if ray.is_initialized():  # Flower shuts Ray down itself; this covers error paths
                ray.shutdown()
            flwr_logger.setLevel(old_level)
        seconds = time.perf_counter() - t0

    if "params" not in out:
        raise RuntimeError("Flower simulation finished without producing final parameters")
    ends = stamps["round_ends"]
    first_work = stamps["client_starts"][0]
    return {
        "params": np.asarray(out["params"], dtype=np.float64),
        "seconds": seconds,
        "seconds_rounds": ends[-1] - first_work,
        "seconds_startup": first_work - t0_wall,
        "seconds_stage": seconds_stage,
        "round_seconds": [e - s for s, e in zip([first_work, *ends[:-1]], ends, strict=False)],
        "flwr_version": flwr.__version__,
        "ray_version": ray.__version__,
        "api": API,
    }


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    try:
        from sampan.metrics import roc_auc

        return float(roc_auc(y, p))
    except ImportError:  # fallback: Mann-Whitney U with average ranks for ties
        from scipy.stats import rankdata

        y = np.asarray(y).astype(bool)
        r = rankdata(p)
        n_pos, n_neg = y.sum(), (~y).sum()
        return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _smoke() -> None:
    from sampan.models import model_from_config

    rng = np.random.default_rng(0)
    n_parties, n_rows, n_features = 5, 2000, 10
    w_true = rng.normal(size=n_features)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        X = rng.normal(size=(n, n_features))
        p = 1 / (1 + np.exp(-(X @ w_true - 1.0)))
        return X, (rng.random(n) < p).astype(np.int8)

    parties = [make(n_rows) for _ in range(n_parties)]
    X_test, y_test = make(5000)
    model_config = {"kind": "logistic", "n_features": n_features}
    train_config = {"epochs": 1, "batch_size": 64, "learning_rate": 0.1, "optimizer": "sgd", "l2": 1e-4}
    model = model_from_config(model_config)
    init = model.init_params(np.random.default_rng(1))

    res = run_flower(parties, model_config, train_config, rounds=3, seed=42, init_params=init)
    auc0 = _auc(y_test, model.predict_proba(init, X_test))
    auc = _auc(y_test, model.predict_proba(res["params"], X_test))
    print(json.dumps({
        "flwr_version": res["flwr_version"], "ray_version": res["ray_version"], "api": res["api"],
        "seconds": round(res["seconds"], 3), "seconds_startup": round(res["seconds_startup"], 3),
        "seconds_rounds": round(res["seconds_rounds"], 3),
        "seconds_shutdown_etc": round(res["seconds"] - res["seconds_startup"] - res["seconds_rounds"], 3),
        "round_seconds": [round(s, 3) for s in res["round_seconds"]],
        "seconds_stage": round(res["seconds_stage"], 4),
        "auc_init": round(auc0, 4), "auc_final": round(auc, 4),
    }, indent=2))


if __name__ == "__main__":
    # Run through the importable module, not `__main__`: Ray then pickles the ClientApp handler by
    # reference (workers import `flower_task` from the driver's sys.path) and the per-worker data
    # cache survives between rounds.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import flower_task

    flower_task._smoke()
