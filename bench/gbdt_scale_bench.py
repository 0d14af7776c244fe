"""Vertical and horizontal GBDT at scale (issue 15): peak memory per process and seconds per tree.

    .venv/bin/python bench/gbdt_scale_bench.py --rows 1000000            # both, 1M rows
    flock /work/helpers/bench.lock .venv/bin/python bench/gbdt_scale_bench.py --rows 1000000 5000000 10000000

Every size runs in a fresh child process (`python bench/gbdt_scale_bench.py --worker ...`), so kernel high-water
marks (VmHWM) belong to that size alone; inside it each party runs in its own forked process (the pinned
multiprocess transport, as separate organisations would) and the coordinator (the dealer, in the vertical
protocol) stays in the child's main process. Reported per process: peak RSS in MiB, and seconds per tree (the
gap between the first and the last tree's progress report, divided by trees - 1: setup and binning excluded;
`setup_and_first_tree_s` has them). The tables are generated in memory (float32 draws; `PartyData` holds X as
it is given today: float64), so a party process's peak includes its table as the party holds it. Horizontally
each bank makes its own table inside its own process (so a peak is that bank's alone); vertically the parent
makes both tables before forking (the parties share one simulated consortium's identities), so every process's
RSS also counts the other tables' pages it maps copy-on-write: read the summed PSS there.

Reusable: `run_vertical_gbdt(n_rows, bank_features=30, partner_features=100, trees=2) -> dict` and
`run_horizontal_gbdt(n_rows, features=30, parties=3, trees=2) -> dict` (`n_rows`: rows per bank), called by
bench/scale_bench.py. Writes bench/results/gbdt_scale.json when run as a script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MIB = 2 ** 20

__all__ = ["run_vertical_gbdt", "run_horizontal_gbdt"]


def _child(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its last stdout line is the JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, json.dumps(args)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"gbdt_scale_bench worker {kind} {args} failed:\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_vertical_gbdt(n_rows: int, bank_features: int = 30, partner_features: int = 100, trees: int = 2, *,
                      max_depth: int = 4, n_bins: int = 32, seed: int = 0) -> dict[str, Any]:
    """Secure vertical GBDT (bank + one partner + dealer) on `n_rows` aligned rows: per-process peaks, s/tree."""
    return _child("vertical", {"n_rows": n_rows, "bank_features": bank_features, "partner_features": partner_features,
                               "trees": trees, "max_depth": max_depth, "n_bins": n_bins, "seed": seed})


def run_horizontal_gbdt(n_rows: int, features: int = 30, parties: int = 3, trees: int = 2, *,
                        max_depth: int = 4, n_bins: int = 32, seed: int = 0) -> dict[str, Any]:
    """Horizontal GBDT over `parties` banks of `n_rows` rows each: per-process peaks, seconds per tree."""
    return _child("horizontal", {"n_rows": n_rows, "features": features, "parties": parties, "trees": trees,
                                 "max_depth": max_depth, "n_bins": n_bins, "seed": seed})


# ---------------------------------------------------------------------------------------------- workers

def _features(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """float32 draws, written block by block (no float64 intermediate of the whole table)."""
    X = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 1 << 18):
        e = min(s + (1 << 18), n)
        X[s:e] = rng.standard_normal((e - s, d), dtype=np.float32)
    return X


def _labels(logit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (rng.random(len(logit)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)


def _ids(n: int, prefix: str) -> np.ndarray:
    return np.char.add(prefix, np.arange(n).astype(str)).astype(object)


def _peaks(sampler: Any, pids: dict[int, str]) -> dict[str, Any]:
    res = sampler.result()
    per = {}
    for key, peak in res.per_process.items():
        pid = int(key.split(" ", 1)[0])
        per[pids.get(pid, key)] = round(peak / MIB, 1)
    return {"peak_rss_mib": per, "sum_of_peaks_mib": round(res.sum_of_peaks / MIB, 1),
            "simultaneous_pss_mib": None if res.simultaneous_pss is None else round(res.simultaneous_pss / MIB, 1)}


def _tree_times(stamps: list[float], started: float, trees: int) -> dict[str, float]:
    per_tree = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else float("nan")
    return {"seconds_per_tree": per_tree, "setup_and_first_tree_s": (stamps[0] - started) if stamps else float("nan"),
            "trees": trees}


def _vertical_worker(a: dict[str, Any]) -> dict[str, Any]:
    from _scale import PeakSampler

    from sampan.data.table import PartyData
    from sampan.models.gbdt import GBDTParams
    from sampan.runtime.federation import build_inprocess_vertical
    from sampan.transport.multiprocess import MultiprocessTransport
    from sampan.vertical.gbdt import train_vertical_gbdt
    from sampan.vertical.session import VerticalSession

    n, db, dp = int(a["n_rows"]), int(a["bank_features"]), int(a["partner_features"])
    rng = np.random.default_rng(int(a["seed"]))
    Xb, Xp = _features(n, db, rng), _features(n, dp, rng)
    logit = -2.0 + 0.4 * Xb[:, :5].sum(1, dtype=np.float64) + 0.15 * Xp[:, :20].sum(1, dtype=np.float64)
    ids = _ids(n, "C")
    tables = {"bank": PartyData("bank", ids, Xb, _labels(logit, rng), [f"b{i}" for i in range(db)]),
              "partner": PartyData("partner", ids, Xp, None, [f"p{i}" for i in range(dp)])}
    del Xb, Xp, logit
    _, parties = build_inprocess_vertical(tables)
    for p in parties.values():  # the same ids in the same order everywhere: alignment is the identity
        p.psi.aligned_rows = np.arange(n)
    del tables
    with PeakSampler() as mem:
        transport = MultiprocessTransport({name: p.app for name, p in parties.items()}, pinned=True)
        pids = {os.getpid(): "coordinator+dealer"} | {proc.pid: name for proc, name in
                                                       zip(transport._procs, parties, strict=True) if proc.pid}
        for pid, name in pids.items():
            mem.name(pid, name)
        session = VerticalSession(transport, label_holder="bank", partners=["partner"])
        session.connect()
        session.n_aligned = n
        n_val = max(2000, n // 100)
        params = GBDTParams(n_trees=int(a["trees"]), max_depth=int(a["max_depth"]), n_bins=int(a["n_bins"]),
                            early_stopping_rounds=10 ** 6)
        stamps: list[float] = []
        started = time.perf_counter()
        res = train_vertical_gbdt(transport, session.run_id, "bank", ["partner"], np.arange(n - n_val),
                                  np.arange(n - n_val, n), params,
                                  progress=lambda _r: stamps.append(time.perf_counter()))
        total = time.perf_counter() - started
        transport.close()
    return {"protocol": "vertical GBDT", "rows": n, "bank_features": db, "partner_features": dp,
            "max_depth": params.max_depth, "n_bins": params.n_bins, "trees_grown": res.trees,
            "seconds_total": total, **_tree_times(stamps, started, res.trees), **_peaks(mem, pids)}


class _LazyApp:
    """An endpoint that builds its party on the first message, i.e. inside the forked party process."""

    def __init__(self, name: str, build: Any) -> None:
        self.name, self._build = name, build
        self._app: Any = None

    def handle(self, message: Any) -> Any:
        if self._app is None:
            self._app = self._build()
        return self._app.handle(message)


def _horizontal_worker(a: dict[str, Any]) -> dict[str, Any]:
    from _scale import PeakSampler

    from sampan.core.party import PartyApp
    from sampan.data.table import PartyData
    from sampan.horizontal.gbdt import HorizontalGBDTParty, train_horizontal_gbdt
    from sampan.models.gbdt import GBDTParams
    from sampan.transport.multiprocess import MultiprocessTransport

    n, d, k = int(a["n_rows"]), int(a["features"]), int(a["parties"])
    names = [f"f{j}" for j in range(d)]

    def build(b: int) -> PartyApp:
        """One bank's table and handlers, made inside its own process (first message): no bank's table is
        mapped in another bank's process or the coordinator's, so each peak is that bank's own."""
        rng = np.random.default_rng([int(a["seed"]), b])
        X = _features(n, d, rng)
        y = _labels(-2.0 + 0.4 * X[:, :5].sum(1, dtype=np.float64), rng)
        n_val = max(2000, n // 100)
        train = PartyData(f"bank{b}", _ids(n - n_val, f"B{b}_"), X[:n - n_val], y[:n - n_val], names)
        val = PartyData(f"bank{b}", _ids(n_val, f"V{b}_"), X[n - n_val:], y[n - n_val:], names)
        del X
        app = PartyApp(f"bank{b}")
        for kind, handler in HorizontalGBDTParty(f"bank{b}", train, val).handlers().items():
            app.register(kind, handler)
        return app

    apps = {f"bank{b}": _LazyApp(f"bank{b}", lambda b=b: build(b)) for b in range(k)}
    params = GBDTParams(n_trees=int(a["trees"]), max_depth=int(a["max_depth"]), n_bins=int(a["n_bins"]),
                        early_stopping_rounds=10 ** 6)
    with PeakSampler() as mem:
        transport = MultiprocessTransport(apps, pinned=True)
        del apps
        pids = {os.getpid(): "coordinator"} | {proc.pid: f"bank{i}" for i, proc in enumerate(transport._procs)
                                               if proc.pid}
        for pid, name in pids.items():
            mem.name(pid, name)
        stamps: list[float] = []
        started = time.perf_counter()
        res = train_horizontal_gbdt(transport, "hgb-scale", [f"bank{b}" for b in range(k)], params, names,
                                    progress=lambda _r: stamps.append(time.perf_counter()))
        total = time.perf_counter() - started
        transport.close()
    trees = len(res.model.trees)
    return {"protocol": "horizontal GBDT", "rows_per_bank": n, "banks": k, "features": d,
            "max_depth": params.max_depth, "n_bins": params.n_bins, "trees_grown": trees, "seconds_total": total,
            **_tree_times(stamps, started, trees), **_peaks(mem, pids)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--trees", type=int, default=2)
    ap.add_argument("--only", choices=["vertical", "horizontal"])
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "ARGS"))
    args = ap.parse_args()
    if args.worker:
        kind, raw = args.worker
        worker = _vertical_worker if kind == "vertical" else _horizontal_worker
        print(json.dumps(worker(json.loads(raw))), flush=True)
        return
    from _scale import growth_exponent

    out: dict[str, Any] = {"machine": platform.platform(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
                           "vertical": [], "horizontal": []}
    for n in args.rows:
        if args.only != "horizontal":
            out["vertical"].append(run_vertical_gbdt(n, trees=args.trees))
            print(json.dumps(out["vertical"][-1]), flush=True)
        if args.only != "vertical":
            out["horizontal"].append(run_horizontal_gbdt(n, trees=args.trees))
            print(json.dumps(out["horizontal"][-1]), flush=True)
    for kind, key in (("vertical", "rows"), ("horizontal", "rows_per_bank")):
        runs = out[kind]
        if len(runs) > 1:
            sizes = [r[key] for r in runs]
            out[f"{kind}_exponents"] = {
                "seconds_per_tree": growth_exponent(sizes, [r["seconds_per_tree"] for r in runs]),
                **{f"peak {p}": growth_exponent(sizes, [r["peak_rss_mib"].get(p, 0) for r in runs])
                   for p in runs[0]["peak_rss_mib"] if not p[0].isdigit()}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gbdt_scale.json").write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k.endswith("exponents")}, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
