"""Performance tests (P-*): time to AUC, round time, bytes at the wire, CPU and memory, scaling, privacy cost,
prediction latency. Times are the verifier's own clock; bytes come from its recording proxy, never the platform.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from sampan.verify.catalogue.base import Context, NotApplicable, Result, Test
from sampan.verify.catalogue.common import (
    QUICK_ROUNDS,
    compare_to_pooled,
    describe_floor,
    horizontal_parties,
    quick_job,
)
from sampan.verify.catalogue.jobs import PartySpec, horizontal_spec, run_job
from sampan.verify.datasets import table_data
from sampan.verify.results import Plot
from sampan.verify.thresholds import value

__all__ = ["PERFORMANCE", "proc_usage"]

Q, S, F = "quick", "standard", "full"


def time_to_auc(ctx: Context) -> Result:
    """Did the final model reach the target (pooled AUC - the horizontal margin), and when?

    "Reached" is the verifier's own judgement of the final model on its holdout (R16-VERDICT-3): the paired
    non-inferiority rule of F-AUC-HORIZONTAL (`common.compare_to_pooled`), since a point estimate on 250 rows
    missed the target for an honest platform about 1 run in 8. The time is the first round whose platform-reported
    AUC (its own holdout) reaches the target, by the verifier's clock; else the whole job. Without scores (only
    /evaluate) the point estimate must reach the target (bare margin, said in the message).
    """
    run = quick_job(ctx)
    c, final, how = compare_to_pooled(ctx, run, "auc_margin_horizontal")
    target = ctx.data.baseline.auc - value("auc_margin_horizontal")
    if c is None:
        reached_final, rule = final >= target, "no scores, so no paired bound: bare margin"
        judged = f"the verifier measures {final:.4f} on the final model vs the target {target:.4f} ({rule})"
    else:
        reached_final, rule = c.passed, "paired DeLong non-inferiority (see sampan.verify.auc_compare)"
        judged = f"the verifier measures {final:.4f} on the final model vs {describe_floor(c)}"
    figures: dict[str, float | None] = {"target_auc": target, "final_auc": final, "job_seconds": run.seconds}
    evidence: dict[str, Any] = {"how": how, "rule": rule, "comparison": c.to_dict() if c is not None else None}
    if c is not None:
        figures.update({"pooled_auc": c.reference_auc, "floor": c.floor, "se_difference": c.se})
    seen = dict(run.round_seen)  # round -> seconds since submit, by the verifier's clock
    limit = value("time_to_auc_max_s")
    if not reached_final:  # R16-VERDICT-3: the verifier's measure of the final model decides "reached" at all
        return Result("fail", f"the target AUC {target:.4f} was not reached: {judged} (the platform's per-round "
                      "AUC is not taken on trust)", figures=figures,
                      evidence={**evidence, "platform_round_auc": run.aucs})
    reached = None
    for r, a in run.aucs:  # the platform's per-round AUC (its own holdout): used only to find the round
        if a >= target and r in seen:
            reached = seen[r]
            break
    when = "the first round whose platform-reported AUC reaches it"
    if reached is None:
        reached, when = run.seconds, "no platform-reported round AUC reaches it: the whole job"
    figures["seconds_to_target"] = reached
    return Result("pass" if reached <= limit else "fail",
                  f"target AUC {target:.4f} reached after {reached:.1f} s ({when}); {judged}",
                  figures=figures, evidence={**evidence, "round_seen": run.round_seen},
                  plots=[Plot("line", "AUC per round (platform's holdout)",
                              {"auc": [(float(r), a) for r, a in run.aucs]}, "round", "AUC")])


def round_time(ctx: Context) -> Result:
    run = quick_job(ctx)
    rounds = int(run.spec["rounds"])
    per_round = run.seconds / rounds
    reported = [float(r["seconds"]) for r in (run.results or {}).get("rounds") or []]
    limit = value("round_time_max_s")
    return Result("pass" if per_round <= limit else "fail",
                  f"{per_round:.2f} s per round by the verifier's clock ({rounds} rounds, {run.seconds:.1f} s)",
                  figures={"seconds_per_round": per_round, "job_seconds": run.seconds,
                           "platform_median_round_s": float(np.median(reported)) if reported else None},
                  evidence={"platform_round_seconds": reported})


def bytes_per_round(ctx: Context) -> Result:
    run = quick_job(ctx)
    if run.plane is None or run.plane.wire is None:
        raise NotApplicable("the verifier ran no party of the quick job (no kit)")
    wire: dict[str, Any] = run.plane.wire
    rounds = int(run.spec["rounds"])
    total = float(wire["bytes_up"] + wire["bytes_down"])
    per_round = total / rounds
    limit = value("bytes_per_round_max")
    d = len(ctx.data.columns) + 1
    return Result("pass" if per_round <= limit else "fail",
                  f"{per_round:,.0f} bytes per round for the verifier's party (both directions, at the wire)",
                  figures={"bytes_per_round": per_round, "bytes_up": float(wire["bytes_up"]),
                           "bytes_down": float(wire["bytes_down"]), "connections": float(wire.get("connections", 0)),
                           "plain_update_bytes": float(8 * d)},
                  evidence={"wire": wire, "rounds": rounds})


def proc_usage(pid: int) -> dict[str, float]:
    """CPU seconds and peak resident memory of a local process, from /proc (Linux; no psutil needed).

    ``children_cpu_s`` is the CPU of its children that ended and were waited for (cutime + cstime)."""
    import os

    status = Path(f"/proc/{pid}/status").read_text()
    peak = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    return {"cpu_s": cpu, "peak_rss": float(peak), "children_cpu_s": (int(fields[13]) + int(fields[14])) / tick}


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process this user can see (/proc/*/stat)."""
    out: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            out[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return out


def process_tree(roots: tuple[int, ...]) -> list[int]:
    """``roots`` and every live descendant of them (a platform's workers, Flower processes, PSI helpers)."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    seen: list[int] = []
    todo = [r for r in roots if r in parents]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(children.get(pid, []))
    return seen


COUNTED = ("counted: the verifier's own party (its kit's thread: CPU of that thread, peak RSS of the verifier's "
           "process); every local platform process named by the target and its live descendants at the end of the "
           "job (CPU user+system, peak RSS each, from /proc); the CPU of descendants that already ended and were "
           "waited for (cutime+cstime of their parent); for a platform in the verifier's own process, the peak RSS "
           "of its largest ended child (getrusage). Not counted: processes on other machines, descendants that "
           "ended but were never waited for, the peak RSS of ended descendants of other processes; an in-process "
           "platform's CPU includes the verifier's own work.")


def cpu_mem(ctx: Context) -> Result:
    import os
    import resource

    run = quick_job(ctx)
    figures: dict[str, float | None] = {}
    evidence: dict[str, Any] = {"counted": COUNTED}
    if run.plane is not None and run.plane.usage:
        figures.update({f"verifier_party_{k}": v for k, v in run.plane.usage.items()})
    tree = process_tree(tuple(ctx.local_pids))
    evidence["processes"] = tree
    total_cpu = 0.0
    for pid in tree:
        try:
            usage = proc_usage(pid)
        except OSError as exc:
            evidence[f"pid {pid}"] = f"unreadable: {exc}"
            continue
        total_cpu += usage["cpu_s"] + usage["children_cpu_s"]
        figures.update({f"platform_{pid}_{k}": v for k, v in usage.items()})
    if os.getpid() in ctx.local_pids:
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
        figures["platform_ended_children_peak_rss"] = float(reaped.ru_maxrss * 1024)
    if tree:
        figures["platform_tree_cpu_s"] = total_cpu
        figures["platform_processes"] = float(len(tree))
    if not figures:
        raise NotApplicable("no process of this evaluation runs on the verifier's machine")
    peaks = [v for k, v in figures.items() if k.endswith("peak_rss") and v is not None]
    limit = value("party_peak_rss_max")
    worst = max(peaks) if peaks else 0.0
    return Result("pass" if worst <= limit else "fail",
                  f"peak resident memory {worst / 2**20:.0f} MiB (largest process); {len(tree)} local platform "
                  f"process(es) counted", figures=figures, evidence=evidence)


def _timed_job(ctx: Context, parties: list[PartySpec], rounds: int, **extra: Any) -> float:
    spec = horizontal_spec(ctx, [p.name for p in parties], rounds=rounds, **extra)
    run = run_job(ctx, spec, parties, prefix="perf")
    return run.seconds / rounds


TIME_FLOOR_S = 0.02  # per-round times below this are clock noise for a slope: counted as this


def _slope(xs: list[float], ys: list[float]) -> float:
    return float(np.polyfit(np.log(xs), np.log(np.maximum(ys, TIME_FLOOR_S)), 1)[0])


def scaling(ctx: Context) -> Result:
    """Rows from Taiwan (7.5k, 15k, 30k: enough work to time), parties and features on German credit."""
    from sampan.verify.datasets import draw_columns, load_benchmark

    t, train = ctx.data.table, ctx.data.train
    rng = np.random.default_rng(ctx.data.seed + 1)  # the evaluation's seed: recorded in the manifest
    rows_sweep, party_sweep, feat_sweep = [], [], []
    big = load_benchmark("taiwan", ctx.data_dir)
    big_cols = draw_columns(big, rng, 10)
    mean, scale = big.X.mean(axis=0), big.X.std(axis=0)
    big.X = (big.X - mean) / np.where(scale > 0, scale, 1.0)
    warm = [PartySpec(f"p{i}", "data_owner", table_data(big, p, big_cols))
            for i, p in enumerate(np.array_split(np.arange(600), 3))]
    spec = horizontal_spec(ctx, [p.name for p in warm], rounds=1)
    spec["features"] = {p.name: list(big_cols) for p in warm}
    run_job(ctx, spec, warm, prefix="perf-warmup")  # one-time costs (imports, caches) must not tilt the slope
    for n in (7500, 15000, 30000):
        rows = np.sort(rng.permutation(big.y.size)[:n])
        parties = [PartySpec(f"p{i}", "data_owner", table_data(big, p, big_cols))
                   for i, p in enumerate(np.array_split(rows, 3))]
        spec = horizontal_spec(ctx, [p.name for p in parties], rounds=3, batch_size=256)
        spec["features"] = {p.name: list(big_cols) for p in parties}
        rows_sweep.append((float(n), run_job(ctx, spec, parties, prefix="perf").seconds / 3))
    for k in (3, 4, 6):  # three at least: secure aggregation of two would show each its peer's update
        parts = np.array_split(rng.permutation(train), k)
        parties = [PartySpec(f"p{i}", "data_owner", table_data(t, p, ctx.data.columns)) for i, p in enumerate(parts)]
        party_sweep.append((float(k), _timed_job(ctx, parties, 3)))
    for frac in (0.34, 0.67, 1.0):
        cols = ctx.data.columns[: max(1, int(len(ctx.data.columns) * frac))]
        parts = np.array_split(train, 3)
        parties = [PartySpec(f"p{i}", "data_owner", table_data(t, p, cols)) for i, p in enumerate(parts)]
        spec = horizontal_spec(ctx, [p.name for p in parties], rounds=3)
        spec["features"] = {p.name: list(cols) for p in parties}
        feat_sweep.append((float(len(cols)), run_job(ctx, spec, parties, prefix="perf").seconds / 3))
    slopes = {name: _slope([x for x, _ in s], [y for _, y in s])
              for name, s in (("rows", rows_sweep), ("parties", party_sweep), ("features", feat_sweep))}
    limit = value("scaling_exponent_max")
    worst = max(slopes.values())
    return Result("pass" if worst <= limit else "fail",
                  "round time ~ " + ", ".join(f"{k}^{v:.2f}" for k, v in slopes.items()),
                  figures={f"slope_{k}": v for k, v in slopes.items()},
                  evidence={"rows": rows_sweep, "parties": party_sweep, "features": feat_sweep,
                            "rows_dataset": "taiwan", "rows_columns": big_cols, "time_floor_s": TIME_FLOOR_S},
                  plots=[Plot("line", "Seconds per round", {"rows": rows_sweep}, "rows", "s"),
                         Plot("line", "Seconds per round", {"parties": party_sweep}, "parties", "s")])


def privacy_cost(ctx: Context) -> Result:
    parties = horizontal_parties(ctx, verifier=False)
    rounds = 5
    plain = _timed_job(ctx, parties, rounds, secure_aggregation=False)
    figures: dict[str, float | None] = {"plain_s_per_round": plain}
    if "secure_aggregation" in ctx.capabilities:
        figures["secagg_s_per_round"] = _timed_job(ctx, parties, rounds, secure_aggregation=True)
    if "dp" in ctx.capabilities:
        figures["dp_s_per_round"] = _timed_job(ctx, parties, rounds, secure_aggregation=False,
                                               dp={"epsilon": 1.0, "delta": 1e-5, "clip": 1.0})
    ratios = {k.replace("_s_per_round", "_ratio"): (v or 0.0) / max(plain, 1e-6)
              for k, v in figures.items() if k != "plain_s_per_round"}
    if not ratios:
        raise NotApplicable("the platform offers neither secure aggregation nor DP")
    figures.update(ratios)
    limit = value("privacy_cost_max_ratio")
    worst = max(ratios.values())
    return Result("pass" if worst <= limit else "fail",
                  ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()) + " of the plain job's time per round",
                  figures=figures)


def predict_latency(ctx: Context) -> Result:
    run = quick_job(ctx)
    rows = ctx.data.evaluation_rows[:100]  # never the judging holdout (R16-VERDICT-12)
    body = table_data(ctx.data.table, rows, ctx.data.columns, label=False)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        ctx.api.ok("POST", f"/jobs/{run.job_id}/predict", body)
        times.append(time.perf_counter() - start)
    p50, p95 = float(np.percentile(times, 50)), float(np.percentile(times, 95))
    limit = value("predict_p95_max_s")
    return Result("pass" if p95 <= limit else "fail", f"p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms "
                  f"for {rows.size} rows", figures={"p50_s": p50, "p95_s": p95, "rows": float(rows.size)})


PERFORMANCE: list[Test] = [
    Test("P-TIME-TO-AUC", "Time to target AUC", "performance", frozenset({Q, S, F}), time_to_auc,
         requires=("horizontal",), inputs=f"the quick job ({QUICK_ROUNDS} rounds); the pooled model scored on the "
         "same holdout rows",
         pass_rule="the final model reaches pooled AUC - margin by the rule of F-AUC-HORIZONTAL (paired DeLong "
         "non-inferiority; bare margin without scores), and the first round whose platform-reported AUC reaches "
         "it (else the job's end) comes within the limit by the verifier's clock",
         thresholds=("time_to_auc_max_s", "auc_margin_horizontal", "auc_noninferiority_alpha", "auc_max_deficit"),
         timeout_s=300),
    Test("P-ROUND-TIME", "Time per round", "performance", frozenset({Q, S, F}), round_time,
         requires=("horizontal",), inputs="the quick job", pass_rule="seconds per round (verifier's clock) <= limit",
         thresholds=("round_time_max_s",), timeout_s=300),
    Test("P-BYTES-PER-ROUND", "Bytes per party per round at the wire", "performance", frozenset({Q, S, F}),
         bytes_per_round, requires=("horizontal",), needs_kit=True,
         inputs="the quick job; the verifier's party behind its recording proxy",
         pass_rule="bytes per round, both directions <= limit", thresholds=("bytes_per_round_max",), timeout_s=300),
    Test("P-CPU-MEM", "CPU and memory per party", "performance", frozenset({S, F}), cpu_mem, requires=("horizontal",),
         inputs="the quick job; /proc of the processes the verifier runs (and the platform's, if local)",
         pass_rule="peak resident memory <= limit", thresholds=("party_peak_rss_max",), timeout_s=300),
    Test("P-SCALING", "Scaling with rows, parties and features", "performance", frozenset({F}), scaling,
         requires=("horizontal",),
         inputs="3-round jobs: Taiwan 7.5k/15k/30k rows; 3/4/6 parties, 1/3, 2/3, all columns of German",
         pass_rule="log-log slope of round time <= limit", thresholds=("scaling_exponent_max",), timeout_s=900),
    Test("P-PRIVACY-COST", "Cost of secure aggregation and DP", "performance", frozenset({S, F}), privacy_cost,
         requires=("horizontal",), inputs="the same 5-round job plain, with secure aggregation, with DP",
         pass_rule="time per round at most the limit times plain", thresholds=("privacy_cost_max_ratio",),
         timeout_s=600),
    Test("P-PREDICT-LATENCY", "Prediction latency", "performance", frozenset({S, F}), predict_latency,
         requires=("horizontal", "predict"), inputs="20 /predict calls of 100 platform-held rows",
         pass_rule="p95 latency <= limit", thresholds=("predict_p95_max_s",)),
]
