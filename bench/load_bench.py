"""Issue 15 item 1: load time and peak memory of a party's table, whole-table path vs streaming path.

    python bench/load_bench.py --rows 1000000 5000000 10000000 --formats parquet csv

Writes ``/tmp/sampan_load_bench/<rows>.{parquet,csv}`` by blocks (never the whole table in memory): ids
``C%010d``, a 0/1 label and 30 float features (4 decimals). Each load runs in a fresh process, which
reports its wall time, its peak RSS (the kernel's VmHWM) and its RSS before loading (Python, NumPy, Arrow
imported). Paths:

- ``old``: the loader before streaming: the whole file read (`read_columns`), then the whole-table checks
  (`from_columns`) building float64 X.
- ``new``: `load_table` (streamed batches, vectorised checks, X preallocated/grown in place), float64 X.
- ``new32``: the same with ``dtype=float32``.

Runs at 5M and 10M rows use several GB: hold the shared lock (``flock /work/helpers/bench.lock ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path("/tmp/sampan_load_bench")
FEATURES = 30
BLOCK = 250_000
MIB = 2**20


def schema() -> object:
    from sampan.data import TableSchema

    return TableSchema(id="id", label="y", features=[f"x{j}" for j in range(FEATURES)])


def write_files(rows: int, formats: list[str]) -> dict[str, Path]:
    """The benchmark tables, written once by blocks and reused."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    ROOT.mkdir(parents=True, exist_ok=True)
    out = {}
    for fmt in formats:
        path = ROOT / f"{rows}.{fmt}"
        out[fmt] = path
        if path.exists():
            continue
        tmp = path.with_suffix(".part")
        rng = np.random.default_rng(rows)
        writer: object = None
        for start in range(0, rows, BLOCK):
            m = min(BLOCK, rows - start)
            cols = {"id": pa.array([f"C{i:010d}" for i in range(start, start + m)]),
                    "y": pa.array(rng.integers(0, 2, m).astype(np.int64))}
            for j in range(FEATURES):
                cols[f"x{j}"] = pa.array(np.round(rng.standard_normal(m), 4))
            table = pa.table(cols)
            if writer is None:
                writer = (pq.ParquetWriter(tmp, table.schema) if fmt == "parquet"
                          else pacsv.CSVWriter(tmp, table.schema))
            writer.write_table(table)  # type: ignore[attr-defined]
        writer.close()  # type: ignore[attr-defined]
        tmp.rename(path)
    return out


def _rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def child(path: str, mode: str) -> None:
    """One load in this (fresh) process; prints a JSON line."""
    import pyarrow  # noqa: F401 - imported before the baseline, as every path needs it

    from sampan.data import from_columns, load_table
    from sampan.data.loaders import read_columns

    sch = schema()
    base = _rss()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage0.ru_utime + usage0.ru_stime
    t0 = time.perf_counter()
    if mode == "old":
        cols = read_columns(path, "bank", string_columns=["id"])
        data = from_columns(cols, sch, "bank", path=path)  # type: ignore[arg-type]
        del cols
    else:
        data = load_table(path, sch, "bank", dtype=np.float32 if mode == "new32" else np.float64)  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu0
    peak = usage.ru_maxrss * 1024
    held = data.X.nbytes + data.ids.nbytes + sum(sys.getsizeof(s) for s in data.ids[:1000]) * len(data) / 1000
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak": peak, "base": base, "X": data.X.nbytes,
                      "ids": held - data.X.nbytes, "rows": len(data)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--formats", nargs="+", default=["parquet", "csv"])
    ap.add_argument("--paths", nargs="+", default=["old", "new", "new32"])
    ap.add_argument("--child", nargs=2, metavar=("PATH", "MODE"))
    ap.add_argument("--write-only", action="store_true", help="only write the tables (no lock needed)")
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    ap_write = args.write_only
    if ap_write:
        for rows in args.rows:
            write_files(rows, args.formats)
        return
    print("| rows | format | path | load s (wall) | CPU s | peak RSS MiB | peak − baseline MiB | X MiB | ids MiB |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for rows in args.rows:
        files = write_files(rows, args.formats)
        for fmt in args.formats:
            for mode in args.paths:
                proc = subprocess.run([sys.executable, __file__, "--child", str(files[fmt]), mode],
                                      capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
                if proc.returncode:
                    print(f"| {rows:,} | {fmt} | {mode} | failed: {proc.stderr.strip().splitlines()[-1]} |||||")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"| {rows:,} | {fmt} | {mode} | {r['seconds']:.1f} | {r['cpu']:.1f} | {r['peak'] / MIB:,.0f} | "
                      f"{(r['peak'] - r['base']) / MIB:,.0f} | {r['X'] / MIB:,.0f} | {r['ids'] / MIB:,.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()
