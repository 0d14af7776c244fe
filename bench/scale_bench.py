"""Issue 15 scale sweep: peak memory and time per round/epoch/tree at 1M, 5M, 10M rows, with the goals checked.

    .venv/bin/python bench/scale_bench.py --quick                      # 100k/200k/400k, a smoke run
    flock /work/helpers/bench.lock .venv/bin/python bench/scale_bench.py   # 1M, 5M, 10M, the four workloads
    .venv/bin/python bench/scale_bench.py --only vertical_lr --sizes 1000000 5000000
    .venv/bin/python bench/scale_bench.py --only workflow_hlr workflow_vlr --sizes 1000000 \\
        --src /tmp/base/src --variant before          # the same end-to-end runs on an older tree

Every (workload, size) runs in a fresh process tree (``--child``), so no run inherits another's heap; this
process samples that tree's memory from outside (`_scale.PeakSampler`: per-process VmHWM, their sum, and the
peak of the summed PSS at one moment, which does not count forked copy-on-write pages twice). The workloads
are the helpers' reusable functions (bench/horizontal_scale_bench.py, vertical_scale_bench.py,
gbdt_scale_bench.py) and two end-to-end runs of today's workflows through `sampan.run` (``workflow_hlr``,
``workflow_vlr``: load_table, the split, PSI for vertical, training, evaluation; parties in forked processes).
A workload whose module is not there is reported as missing, not skipped silently.
Results accumulate in bench/results/scale.json (one entry per workload, size and variant; a re-run replaces it;
--quick runs go to scale_quick.json). ``--lock FILE`` holds that flock only while each measurement runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scale import (  # noqa: E402  (bench/ is not a package)
    MIB,
    PeakSampler,
    cached_horizontal_tables,
    cached_party_tables,
    growth_exponent,
    markdown_table,
)

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
FULL, QUICK = [1_000_000, 5_000_000, 10_000_000], [100_000, 200_000, 400_000]
GB = 1e9


@dataclass(frozen=True)
class Workload:
    """One measured job: ``module.function(n_rows, **kwargs)`` returning a dict with ``seconds_per_<unit>``."""

    title: str
    unit: str
    module: str
    function: str
    kwargs: dict[str, Any]


WORKLOADS: dict[str, Workload] = {
    "horizontal_lr": Workload("horizontal LR (30 features, a party's rows)", "round",
                              "horizontal_scale_bench", "run_horizontal_lr", {"features": 30, "rounds": 2}),
    "horizontal_gbdt": Workload("horizontal GBDT (30 features, 3 parties)", "tree",
                                "gbdt_scale_bench", "run_horizontal_gbdt", {"features": 30, "parties": 3, "trees": 2}),
    "vertical_lr": Workload("secure vertical LR (30 + 30)", "epoch",
                            "vertical_scale_bench", "run_secure_lr",
                            {"bank_features": 30, "partner_features": 30, "epochs": 1}),
    "vertical_gbdt": Workload("vertical GBDT (30 + 100)", "tree", "gbdt_scale_bench", "run_vertical_gbdt",
                              {"bank_features": 30, "partner_features": 100, "trees": 2}),
    "workflow_hlr": Workload("end to end: `sampan.run` horizontal LR (2 parties x rows, 30 features)", "round",
                             "scale_bench", "workflow_horizontal_lr", {"features": 30, "rounds": 2}),
    "workflow_vlr": Workload("end to end: `sampan.run` vertical LR with PSI (30 + 30)", "epoch",
                             "scale_bench", "workflow_vertical_lr", {"bank_features": 30, "partner_features": 30}),
}
MAIN = ["horizontal_lr", "vertical_lr", "vertical_gbdt", "horizontal_gbdt"]


# ---------------------------------------------------------------- the end-to-end workflow runs

class _Clock:
    """A progress hook that keeps each round's seconds (the runner reports them)."""

    def __init__(self) -> None:
        self.rounds: list[float] = []

    def run_started(self, run_id: str, total_rounds: int, resumed_from: int) -> None:
        pass

    def round_started(self, round_number: int, n_parties: int) -> None:
        pass

    def party_done(self, party: str) -> None:
        pass

    def round_finished(self, result: Any) -> None:
        self.rounds.append(float(result.seconds))


def workflow_horizontal_lr(n_rows: int, features: int = 30, rounds: int = 2, parties: int = 2) -> dict[str, Any]:
    """`sampan.run` of horizontal FedAvg LR: ``parties`` banks of ``n_rows`` rows each, one forked process each."""
    import sampan

    paths = cached_horizontal_tables(n_rows, features, parties)
    cols = [f"f{j:02d}" for j in range(features)]
    with tempfile.TemporaryDirectory(prefix="sampan-scale-") as tmp:
        cfg = {"run": {"name": "scale-hlr", "workflow": "horizontal", "seed": 1, "rounds": rounds,
                       "workers": parties, "report_dir": tmp},
               "schema": {"id": "id", "label": "label", "features": cols},
               "model": {"kind": "logistic"},
               "training": {"local_epochs": 1, "batch_size": 64, "learning_rate": 0.05},
               "strategy": {"name": "fedavg"},
               "parties": [{"name": k, "path": str(v)} for k, v in paths.items()]}
        clock = _Clock()
        started = time.perf_counter()
        run = sampan.run(cfg, store=f"sqlite:///{tmp}/runs.db", progress=clock)
        total = time.perf_counter() - started
    return {"rows_per_party": n_rows, "parties": parties, "round_seconds": clock.rounds,
            "seconds_per_round": sum(clock.rounds) / max(1, len(clock.rounds)), "total_seconds": total,
            "auc": run.final_metrics.get("auc")}


def workflow_vertical_lr(n_rows: int, bank_features: int = 30, partner_features: int = 30,
                         epochs: int = 1) -> dict[str, Any]:
    """`sampan.run` of a vertical LR run (PSI, split, secure LR, evaluation), each party in a forked process.

    Seconds per epoch come from the coordinator's per-epoch validation check (wrapped here, where it exists)."""
    import sampan

    paths = cached_party_tables(n_rows, {"bank": bank_features, "partner": partner_features})
    marks: list[float] = []
    try:
        import sampan.vertical.session as session
        import sampan.vertical.training as training

        check, train = training.check_validation_score, session.train_secure_lr

        def timed_check(*args: Any, **kwargs: Any) -> Any:
            marks.append(time.perf_counter())
            return check(*args, **kwargs)

        def timed_train(*args: Any, **kwargs: Any) -> Any:
            marks.append(time.perf_counter())
            return train(*args, **kwargs)

        training.check_validation_score = timed_check
        session.train_secure_lr = timed_train
    except (ImportError, AttributeError):
        pass
    bank = [f"bank_f{j:02d}" for j in range(bank_features)]
    partner = [f"partner_f{j:02d}" for j in range(partner_features)]
    with tempfile.TemporaryDirectory(prefix="sampan-scale-") as tmp:
        cfg = {"run": {"name": "scale-vlr", "workflow": "vertical", "seed": 1, "workers": 2, "report_dir": tmp},
               "schema": {"id": "id", "label": "label", "features": bank + partner},
               "vertical": {"label_holder": "bank", "models": ["lr"], "lr": {"epochs": epochs, "patience": epochs}},
               "parties": [{"name": "bank", "path": str(paths["bank"]), "features": bank},
                           {"name": "partner", "path": str(paths["partner"]), "features": partner}]}
        started = time.perf_counter()
        run = sampan.run(cfg, store=f"sqlite:///{tmp}/runs.db")
        total = time.perf_counter() - started
    epochs_s = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    return {"rows": n_rows, "epoch_seconds": epochs_s,
            "seconds_per_epoch": sum(epochs_s) / len(epochs_s) if epochs_s else None,
            "before_training_seconds": marks[0] - started if marks else None, "total_seconds": total,
            "auc": run.final_metrics.get("auc")}


# ---------------------------------------------------------------- one measured child run

def child(name: str, n_rows: int, out: Path) -> None:
    """Run one workload in this (fresh) process and write its dict as JSON."""
    work = WORKLOADS[name]
    fn: Callable[..., dict[str, Any]] = getattr(importlib.import_module(work.module), work.function)
    result = fn(n_rows, **work.kwargs)
    out.write_text(json.dumps(result, default=str))


def _seconds_per_unit(result: dict[str, Any], unit: str) -> float | None:
    for key in (f"seconds_per_{unit}", f"{unit}_s", f"{unit}_seconds_mean"):
        if isinstance(result.get(key), (int, float)):
            return float(result[key])
    listed = result.get(f"{unit}_seconds")
    if isinstance(listed, list) and listed:
        return float(sum(listed) / len(listed))
    return None


def measure(name: str, n_rows: int, *, src: str | None, timeout: float) -> dict[str, Any]:
    """One fresh process tree for (workload, size), its memory sampled from here."""
    work = WORKLOADS[name]
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="sampan-scale-out-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, str(n_rows), str(out)]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True)
        with PeakSampler(root=proc.pid, interval=0.1) as mem:  # PSS on its default budget, 1% of a core
            mem.name(proc.pid, "harness child (coordinator)")
            try:
                _, err = proc.communicate(timeout=timeout)
                status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the child's own session: only what this run started
                _, err = proc.communicate()
                status = f"timed out after {timeout:.0f} s"
            except BaseException:  # interrupted or terminated: leave no measured run behind, unlocked
                os.killpg(proc.pid, signal.SIGKILL)
                raise
        wall = time.perf_counter() - started
        result = json.loads(out.read_text()) if out.exists() else {}
    peaks = mem.result()
    others = {k: v for k, v in peaks.per_process.items() if not k.startswith(f"{proc.pid} ")}
    party_peak = max(others.values(), default=peaks.per_process.get(f"{proc.pid} harness child (coordinator)", 0))
    entry = {"workload": name, "rows": n_rows, "status": status, "wall_seconds": round(wall, 1),
             "seconds_per_unit": _seconds_per_unit(result, work.unit), "unit": work.unit,
             "largest_worker_peak_mib": round(party_peak / MIB, 1), "memory": peaks.as_dict(), "result": result}
    if status != "ok":
        entry["stderr_tail"] = (err or "")[-3000:]
    return entry


# ---------------------------------------------------------------- report

def _together(run: dict[str, Any]) -> float:
    """Memory held by the whole process tree at its fullest: the peak summed PSS (shared pages once), else RSS."""
    m = run["memory"]
    return float(m["simultaneous_pss_mib"] or m["simultaneous_rss_mib"])


def _goals(runs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(goal, measured, met / not met / not measured) for the issue's goals."""
    def at(name: str, n: int) -> dict[str, Any] | None:
        return next((r for r in runs if r["workload"] == name and r["rows"] == n and r["status"] == "ok"), None)

    rows: list[tuple[str, str, str]] = []
    h = at("horizontal_lr", 10_000_000)
    rows.append(("10M-row horizontal LR party <= 4 GB peak",
                 f"{h['largest_worker_peak_mib'] * MIB / GB:.2f} GB" if h else "-",
                 ("met" if h["largest_worker_peak_mib"] * MIB <= 4 * GB else "not met") if h else "not measured"))
    v = at("vertical_lr", 5_000_000)
    vm = _together(v) if v else None
    rows.append(("5M-row secure vertical LR (30+30) <= 12 GB summed over processes (peak summed PSS)",
                 f"{vm * MIB / GB:.2f} GB" if vm else "-",
                 ("met" if vm * MIB <= 12 * GB else "not met") if vm else "not measured"))
    for name in WORKLOADS:
        ok = sorted((r for r in runs if r["workload"] == name and r["status"] == "ok"), key=lambda r: r["rows"])
        if len(ok) < 2:
            continue
        sizes = [r["rows"] for r in ok]
        for what, values in (("time", [r["seconds_per_unit"] or 0 for r in ok]),
                             ("memory", [_together(r) for r in ok])):
            e = growth_exponent(sizes, values)
            rows.append((f"{name}: {what} growth exponent <= 1.1 ({sizes[0]:,}..{sizes[-1]:,} rows)", f"{e:.2f}",
                         "met" if e <= 1.1 else "not met"))
    return rows


def report(runs: list[dict[str, Any]]) -> str:
    """The sweep's markdown: one row per run, then the goals (runs without a variant only)."""
    table = []
    for r in sorted(runs, key=lambda r: (r["workload"], r.get("variant", ""), r["rows"])):
        m = r["memory"]
        table.append([r["workload"] + (f" ({r['variant']})" if r.get("variant") else ""), r["rows"],
                      r["seconds_per_unit"], r["unit"], r["largest_worker_peak_mib"], m["sum_of_peaks_mib"],
                      m["simultaneous_pss_mib"], r["wall_seconds"], r["status"]])
    text = markdown_table(["workload", "rows", "s per unit", "unit", "largest party process peak MiB",
                           "sum of process peaks MiB", "peak summed PSS MiB", "wall s", "status"], table)
    goals = _goals([r for r in runs if not r.get("variant")])
    text += "\n\n" + markdown_table(["goal", "measured", "verdict"], [list(g) for g in goals])
    pairs = []
    for b in (r for r in runs if r.get("variant") == "before" and r["status"] == "ok"):
        a = next((r for r in runs if not r.get("variant") and r["status"] == "ok"
                  and (r["workload"], r["rows"]) == (b["workload"], b["rows"])), None)
        if a:
            pairs.append([b["workload"], b["rows"], b["seconds_per_unit"], a["seconds_per_unit"],
                          b["largest_worker_peak_mib"], a["largest_worker_peak_mib"],
                          _together(b), _together(a)])
    if pairs:
        text += "\n\n" + markdown_table(["workload", "rows", "s per unit before", "after",
                                          "largest process MiB before", "after", "summed PSS MiB before", "after"],
                                         pairs)
    return text


def _commit() -> str:
    """The measured tree: HEAD, and '+dirty' when src/ has uncommitted changes (others' work in progress)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + ("+dirty" if dirty else "")


def _present(name: str) -> bool:
    module = WORKLOADS[name].module
    if module == "scale_bench" or (Path(__file__).parent / f"{module}.py").exists():
        return True
    print(f"{name}: bench/{module}.py is not there: not measured", flush=True)
    return False


def _measure_locked(name: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement, holding ``--lock`` (the shared machine's big-run lock) only while it runs."""
    import fcntl

    with open(args.lock, "a") if args.lock else open(os.devnull) as lock:
        if args.lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
        entry = measure(name, n, src=args.src, timeout=args.timeout)
    entry["variant"] = args.variant
    entry["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    entry["load_average"] = os.getloadavg()[0]
    return entry


def _save(out: Path, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Merge one entry into the results file (re-read first: another sweep may have written meanwhile)."""
    runs = json.loads(out.read_text())["runs"] if out.exists() else []
    key = (entry["workload"], entry["rows"], entry.get("variant", ""))
    runs = [r for r in runs if (r["workload"], r["rows"], r.get("variant", "")) != key] + [entry]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.part")
    tmp.write_text(json.dumps({"machine": platform.platform(), "python": platform.python_version(),
                               "cpus": os.cpu_count(), "runs": runs}, indent=1, default=str))
    os.replace(tmp, out)
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("WORKLOAD", "ROWS", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--quick", action="store_true", help="100k, 200k, 400k rows")
    parser.add_argument("--only", nargs="+", choices=list(WORKLOADS), default=MAIN)
    parser.add_argument("--src", help="PYTHONPATH of the sampan tree to measure (default: the installed one)")
    parser.add_argument("--variant", default="", help="label of these runs in the results (e.g. 'before')")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per (workload, size)")
    parser.add_argument("--out", type=Path, help="default bench/results/scale.json (--quick: scale_quick.json)")
    parser.add_argument("--plan", nargs="+", metavar="WORKLOAD:ROWS", help="explicit runs, in this order")
    parser.add_argument("--lock", help="a file to flock around each measurement (e.g. /work/helpers/bench.lock)")
    parser.add_argument("--report-only", action="store_true", help="print the table of the saved results")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]), Path(args.child[2]))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `kill` stops the measured run too
    args.out = args.out or (RESULTS.with_name("scale_quick.json") if args.quick else RESULTS)
    saved = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    runs: list[dict[str, Any]] = saved["runs"]
    sizes = args.sizes or (QUICK if args.quick else FULL)
    todo = [] if args.report_only else [n for n in args.only if _present(n)]
    # every workload at a size before the next size, so a cut-short sweep still has exponents; or --plan's order
    plan = [(p.split(":")[0], int(p.split(":")[1])) for p in args.plan] if args.plan else [
        (name, n) for n in sizes for name in todo]
    given_up: set[str] = set()
    if not args.report_only:
        for name, n in plan:
            if name in given_up or not _present(name):
                continue
            entry = _measure_locked(name, n, args)
            entry["commit"] = _commit()
            print(json.dumps({k: entry[k] for k in ("workload", "rows", "status", "seconds_per_unit",
                                                    "largest_worker_peak_mib", "wall_seconds")}
                             | {"peak_summed_pss_mib": entry["memory"]["simultaneous_pss_mib"]}), flush=True)
            if entry["status"] != "ok":
                print(entry.get("stderr_tail", ""), file=sys.stderr, flush=True)
                given_up.add(name)  # larger sizes of a failed or timed-out workload are not tried
            runs = _save(args.out, entry)
    print(report(runs))


if __name__ == "__main__":
    main()
