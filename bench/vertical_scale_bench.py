"""Secure vertical LR at scale: peak RSS per process and seconds per epoch (issue 15, item 2).

    .venv/bin/python bench/vertical_scale_bench.py --rows 200000 1000000
    flock /work/helpers/bench.lock .venv/bin/python bench/vertical_scale_bench.py --rows 5000000

Every party runs in its own forked process (`MultiprocessTransport(pinned=True)`), as separate organisations
would; the coordinator (relay and dealer) is this process. Each party's table is written to a .npy file and
memory-mapped, so this process never reads the features: a party's RSS counts the pages it touches, and the
coordinator's counts what it holds itself (plus the parties' id strings, which the simulation builds here).
Peak RSS is VmHWM from /proc, reset (clear_refs 5) once the parties are forked. Reusable by the scale harness:
`run_secure_lr(n_rows, bank_features, partner_features, epochs) -> dict`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sampan.data.table import PartyData
from sampan.runtime.federation import build_inprocess_vertical
from sampan.transport.multiprocess import MultiprocessTransport
from sampan.vertical.session import Splits, VerticalSession
from sampan.vertical.training import VerticalLRConfig

RESULTS = Path(__file__).parent / "results"


def _status_kib(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _cpu_seconds(pid: int | str) -> float:
    """User + system CPU seconds of a process so far (robust to the shared machine's load, unlike wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _reset_peak(pid: int | str) -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak is the peak of what follows."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def _tables(tmp: Path, n_rows: int, bank_features: int, partner_features: int, seed: int) -> dict[str, PartyData]:
    """Synthetic aligned tables, features memory-mapped from disk (generated in blocks: bounded here too)."""
    rng = np.random.default_rng(seed)
    Xb = np.lib.format.open_memmap(tmp / "bank.npy", mode="w+", dtype=np.float64, shape=(n_rows, bank_features))
    Xp = np.lib.format.open_memmap(tmp / "partner.npy", mode="w+", dtype=np.float64,
                                   shape=(n_rows, partner_features))
    y = np.empty(n_rows, dtype=np.int8)
    for lo in range(0, n_rows, 1 << 18):
        hi = min(lo + (1 << 18), n_rows)
        b, p = rng.standard_normal((hi - lo, bank_features)), rng.standard_normal((hi - lo, partner_features))
        Xb[lo:hi], Xp[lo:hi] = b, p
        logit = -2 + b[:, :5].sum(axis=1) * 0.3 + p[:, :20].sum(axis=1) * 0.1
        y[lo:hi] = rng.random(hi - lo) < 1 / (1 + np.exp(-logit))
    Xb.flush()
    Xp.flush()
    del Xb, Xp
    ids = np.arange(n_rows).astype(str).astype(object)
    return {"bank": PartyData("bank", ids, np.load(tmp / "bank.npy", mmap_mode="r"), y,
                              [f"b{i}" for i in range(bank_features)]),
            "partner": PartyData("partner", ids, np.load(tmp / "partner.npy", mmap_mode="r"), None,
                                 [f"p{i}" for i in range(partner_features)])}


def run_secure_lr(n_rows: int, bank_features: int = 30, partner_features: int = 30, epochs: int = 1, *,
                  batch_size: int = 512, n_val: int | None = None, seed: int = 0) -> dict[str, Any]:
    """One secure vertical LR training (shared weights, the default) with each party in its own process.

    Returns per-process peak RSS (MiB; `coordinator` is this process), their sum, seconds per epoch and the
    setup seconds. n_val: validation rows (default min(20000, n/10), disjoint from training).
    """
    with tempfile.TemporaryDirectory(prefix="sampan-vlr-scale-") as tmp_dir:
        tables = _tables(Path(tmp_dir), n_rows, bank_features, partner_features, seed)
        _, parties = build_inprocess_vertical(tables)
        for party in parties.values():  # repeated runs in one process (parties cap instances at 2 by default)
            party.lr.runs.max_instances = 1000
            party.psi.aligned_rows = np.arange(n_rows)  # the same ids in the same order: alignment is the identity
        transport = MultiprocessTransport({n: p.app for n, p in parties.items()}, pinned=True)
        pids = {name: int(proc.pid or 0) for name, proc in zip(parties, transport._procs, strict=True)}
        del tables, parties
        gc.collect()
        for pid in [*pids.values(), "self"]:
            _reset_peak(pid)  # type: ignore[arg-type]
        base = {name: _status_kib(pid, "VmRSS") for name, pid in pids.items()} | {
            "coordinator": _status_kib("self", "VmRSS")}
        try:
            session = VerticalSession(transport, label_holder="bank", partners=["partner"])
            session.connect()
            session.n_aligned = n_rows
            n_val = n_val if n_val is not None else min(20000, n_rows // 10)
            splits = Splits(np.arange(n_val, n_rows), np.arange(n_val), np.arange(0))
            config = VerticalLRConfig(epochs=epochs, batch_size=batch_size, patience=epochs)
            procs: dict[str, int | str] = {**pids, "coordinator": "self"}
            cpu0 = {name: _cpu_seconds(pid) for name, pid in procs.items()}
            t0 = time.perf_counter()
            result = session.train(splits, config, seed=seed)
            total = time.perf_counter() - t0
            cpu = {name: round(_cpu_seconds(pid) - cpu0[name], 2) for name, pid in procs.items()}
            peaks = {name: _status_kib(pid, "VmHWM") for name, pid in pids.items()}
            peaks["coordinator"] = _status_kib("self", "VmHWM")
        finally:
            transport.close()
    mib = {k: round(v / 1024, 1) for k, v in peaks.items()}
    return {"rows": n_rows, "bank_features": bank_features, "partner_features": partner_features,
            "epochs": epochs, "batch_size": batch_size, "n_val": n_val,
            "peak_rss_mib": mib, "peak_rss_sum_mib": round(sum(mib.values()), 1),
            "start_rss_mib": {k: round(v / 1024, 1) for k, v in base.items()},
            "epoch_seconds": [round(s, 2) for s in result.epoch_seconds],
            "dealer_seconds": [round(s, 2) for s in result.dealer_seconds],
            "seconds_per_epoch": round(float(np.mean(result.epoch_seconds)), 2),
            "total_seconds": round(total, 2),
            "setup_and_validation_seconds": round(total - sum(result.epoch_seconds), 2),
            "cpu_seconds": cpu, "cpu_seconds_sum": round(sum(cpu.values()), 2),
            "val_brier": [round(b, 5) for b in result.val_brier]}


def growth_exponent(small: dict[str, Any], large: dict[str, Any], key: str) -> float:
    """d log(value) / d log(rows) between two runs."""
    def get(r: dict[str, Any]) -> float:
        return float(r[key])
    return float(np.log(get(large) / get(small)) / np.log(large["rows"] / small["rows"]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--bank-features", type=int, default=30)
    parser.add_argument("--partner-features", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "vertical_scale.json")
    args = parser.parse_args(argv)
    runs = []
    for n in args.rows:
        run = run_secure_lr(n, args.bank_features, args.partner_features, args.epochs)
        print(json.dumps(run), flush=True)
        runs.append(run)
    report: dict[str, Any] = {"machine": platform.platform(), "python": sys.version.split()[0], "runs": runs}
    if len(runs) >= 2:
        report["memory_exponent"] = round(growth_exponent(runs[0], runs[-1], "peak_rss_sum_mib"), 3)
        report["time_exponent"] = round(growth_exponent(runs[0], runs[-1], "seconds_per_epoch"), 3)
        report["cpu_exponent"] = round(growth_exponent(runs[0], runs[-1], "cpu_seconds_sum"), 3)
        print(json.dumps({k: report[k] for k in ("memory_exponent", "time_exponent", "cpu_exponent")}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
