"""Shared utilities of the issue-15 scale benchmarks: memory sampling, synthetic tables, growth exponents.

Usage (bench scripts run as ``python bench/<x>.py``, so ``bench/`` is on ``sys.path``)::

    from _scale import PeakSampler, write_party_tables, growth_exponent, markdown_table

    paths = write_party_tables(tmp, n_rows=1_000_000, parties={"bank": 30, "partner": 30})
    paths = cached_party_tables(1_000_000, {"bank": 30, "partner": 30})   # the same, written once and reused
    banks = cached_horizontal_tables(1_000_000, features=30, parties=3)  # {"bank0": path, ...}
    with PeakSampler() as mem:                 # this process and every descendant: VmHWM every 50 ms, PSS on a budget
        mem.name(worker_pid, "partner")        # optional: label a process in the report
        ...run the workload...
    peaks = mem.result()                       # MemoryPeaks
    peaks.per_process                          # {"1234 bank": peak bytes, ...} (kernel VmHWM, per process)
    peaks.sum_of_peaks                         # the per-process peaks added up (upper bound)
    peaks.simultaneous_rss, peaks.simultaneous_pss   # the peak of the summed RSS / PSS at one sample
    peaks.pss_samples, peaks.pss_seconds       # how many PSS sweeps were read, and what they cost
    growth_exponent([1e6, 5e6, 1e7], [t1, t5, t10])  # slope of log value against log size
    print(markdown_table(["rows", "peak MiB"], [[1_000_000, 812.5]]))

Why per-process VmHWM: it is the kernel's own high-water mark, so short spikes between two samples are
not missed. Forked workers share their parent's pages copy-on-write, and RSS counts a shared page in
every process that maps it: the sum of per-process peaks then over-counts, and the summed PSS (each
shared page divided among its sharers) is the honest machine total. Both are reported.

Why PSS on a time budget: the kernel computes PSS (/proc/<pid>/smaps_rollup) by walking every page table
of the process under its mmap lock, so one read costs time growing with the memory mapped, and the target
process stalls on the lock meanwhile (mmap, munmap, brk wait). Read every 0.5 s over a 10M-row run, this
sampler inflated the vertical GBDT's wall clock (time exponent 1.15 in the sweep, 0.97 in CPU time without
it). So the cheap VmRSS/VmHWM poll (/proc/<pid>/status, counters, no walk) stays at ``interval``, and the PSS
sweep (every process of the tree) runs on a budget: each sweep's CPU time is measured (the page walk is
the kernel's work in this thread; the target's lock wait lasts about as long) and the next one waits until
the sweeps have used at most ``pss_budget`` (default 1%) of one core since the start (a token bucket, its
savings capped at a few sweeps). Half of that pays for a regular sweep; the rest is kept for chasing
peaks: a sweep is read early when the summed RSS reaches a new high 2% above the highest one a sweep has
seen, since the summed PSS peaks where memory does. A last sweep runs at exit (outside the budget).

What the budgeted PSS can miss: a summed-PSS peak that rises and falls between two sweeps without raising
the summed RSS to a new high (e.g. forked workers un-sharing copy-on-write pages while the RSS sum is
already at its high). A process cannot be read once it has exited, and its coming exit cannot be seen from
outside (only ptrace could stop it there), so the last moments of each process are sampled like any
others. ``simultaneous_pss`` is therefore a lower bound of the true peak of the summed PSS (every value is a
real reading; a sweep reads the processes one after another, not at one instant), ``simultaneous_rss`` an
upper bound at the polled moments, and ``sum_of_peaks`` an upper bound over the whole run.

Synthetic tables are written by row blocks (never the whole table in memory): float32 features, ids
``C%09d``, and a 0/1 label drawn from a logistic model over every party's features, so a model trained on
them learns something (the Bayes AUC is about 0.8).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BLOCK_ROWS", "MIB", "MemoryPeaks", "PeakSampler", "cache_root", "cached_horizontal_tables",
           "cached_party_tables", "descendants", "growth_exponent", "ids_for", "markdown_table",
           "write_horizontal_tables", "write_party_tables", "write_table"]

BLOCK_ROWS = 250_000
MIB = 2**20


# ---------------------------------------------------------------- process-tree peak memory

def _status_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of one process in bytes; empty when it has exited."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith((b"VmRSS:", b"VmHWM:")):
                    key, value = line.split(b":", 1)
                    out[key.decode()] = int(value.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    return out


def _pss(pid: int) -> int | None:
    """Proportional set size in bytes (shared pages divided among sharers); 0 once the process has exited
    (it holds nothing then), None when the kernel refuses to show it (another user's process)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return 0
    except PermissionError:
        return None
    return 0  # a zombie: no memory map left


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` via /proc/<pid>/task/*/children, or a /proc scan where that is absent."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return kids
    try:
        for tid in tasks:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                kids.extend(int(k) for k in fh.read().split())
        return kids
    except FileNotFoundError:  # kernel without CONFIG_PROC_CHILDREN: scan every process's parent
        pass
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    stat = fh.read()
                if int(stat.rsplit(b")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
    return kids


def descendants(pid: int) -> list[int]:
    """``pid`` and every live descendant (breadth first)."""
    seen, queue = [pid], [pid]
    while queue:
        for kid in _children(queue.pop()):
            if kid not in seen:
                seen.append(kid)
                queue.append(kid)
    return seen


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            parts = fh.read().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return "?"
    shown = [os.path.basename(p.decode(errors="replace")) for p in parts[:3] if p]
    return " ".join(shown)[:60] or "?"


@dataclass
class MemoryPeaks:
    """What a `PeakSampler` saw, in bytes."""

    per_process: dict[str, int]          # "<pid> <label>" -> that process's peak (VmHWM, or sampled RSS)
    sum_of_peaks: int                    # sum of the per-process peaks (over-counts shared pages)
    simultaneous_rss: int                # the largest summed VmRSS at one sample
    simultaneous_pss: int | None         # the largest summed PSS at one sample (None: unreadable)
    samples: int
    seconds: float
    pss_samples: int = 0                 # PSS sweeps read (a sweep reads every process of the tree)
    pss_seconds: float = 0.0             # CPU time those sweeps took (the sampler's PSS cost)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, in MiB (2**20 bytes)."""
        pss = self.simultaneous_pss
        return {"per_process_mib": {k: round(v / MIB, 1) for k, v in self.per_process.items()},
                "sum_of_peaks_mib": round(self.sum_of_peaks / MIB, 1),
                "simultaneous_rss_mib": round(self.simultaneous_rss / MIB, 1),
                "simultaneous_pss_mib": None if pss is None else round(pss / MIB, 1),
                "samples": self.samples, "seconds": round(self.seconds, 2),
                "pss_samples": self.pss_samples, "pss_cpu_seconds": round(self.pss_seconds, 3)}

    def peak_of(self, label: str) -> int:
        """The peak of the process labelled ``label`` (0 when none was)."""
        return max((v for k, v in self.per_process.items() if k.split(" ", 1)[-1] == label), default=0)


@dataclass
class PeakSampler:
    """Polls the memory of ``root`` (default: this process) and all its descendants from a thread.

    Use as a context manager; `result()` after exit. ``interval``: seconds between the cheap polls (VmRSS and
    VmHWM of every process). ``pss_budget``: the share of one core the PSS sweeps may take (0 turns them
    off); the module note says how they are spaced and what they can miss.
    """

    root: int = field(default_factory=os.getpid)
    interval: float = 0.05
    pss_budget: float = 0.01
    include_root: bool = True
    _labels: dict[int, str] = field(default_factory=dict)
    _named: set[int] = field(default_factory=set)
    _peaks: dict[int, int] = field(default_factory=dict)
    _max_rss: int = 0
    _max_pss: int | None = None
    _samples: int = 0
    _pss_samples: int = 0
    _pss_seconds: float = 0.0
    _pss_cost: float | None = None  # the last sweep's CPU time (None: no sweep yet)
    _pss_last: float = 0.0  # when the last sweep started
    _credit: float = 0.0  # seconds of PSS reading earned and not yet spent (negative after the first sweep)
    _rss_covered: int = 0  # the highest summed RSS at which a sweep was read
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: float = 0.0
    _seconds: float = 0.0
    _last_poll: float = 0.0

    def name(self, pid: int, label: str) -> None:
        """Label a process (a party's worker, the coordinator) in the report."""
        self._labels[pid] = label
        self._named.add(pid)

    def _poll(self, final: bool = False) -> None:
        """One cheap look at every process (VmRSS, VmHWM), then a PSS sweep if one is due (always when final)."""
        pids = descendants(self.root)
        if not self.include_root:
            pids = pids[1:]
        total_rss, alive = 0, []
        for pid in pids:
            status = _status_kb(pid)
            if not status:
                continue
            alive.append(pid)
            rss = status.get("VmRSS", 0)
            total_rss += rss
            if pid not in self._named:  # re-read: a forked child may exec another program
                command = _command(pid)
                if self._labels.get(pid, command) != command:
                    self._peaks.pop(pid, None)  # exec: the kernel restarts VmHWM; what came before was the parent's
                self._labels[pid] = command
            self._peaks[pid] = max(self._peaks.get(pid, 0), rss, status.get("VmHWM", 0))
        self._max_rss = max(self._max_rss, total_rss)
        self._samples += 1
        now = time.perf_counter()
        if self.pss_budget > 0 and (final or self._pss_due(now, total_rss)):
            self._sweep(alive, total_rss, now)
        self._last_poll = now

    def _pss_due(self, now: float, total_rss: int) -> bool:
        """The budget's rule: earn ``pss_budget`` seconds of reading per second (at most four sweeps' worth
        saved), spend a sweep's cost per sweep; a regular sweep also waits until half the budget has paid
        for it, so the other half is there when the summed RSS reaches a new high."""
        if self._pss_cost is None:
            return True  # the first sweep: its cost is not known yet
        self._credit = min(self._credit + (now - self._last_poll) * self.pss_budget, 4 * self._pss_cost)
        if self._credit < self._pss_cost:
            return False
        regular = now - self._pss_last >= 2 * self._pss_cost / self.pss_budget
        return regular or total_rss > 1.02 * self._rss_covered

    def _sweep(self, pids: list[int], total_rss: int, now: float) -> None:
        """Read every process's PSS and keep the sum's peak; a process the kernel will not show voids the sum."""
        total_pss, readable, cpu = 0, True, time.thread_time()
        for pid in pids:
            pss = _pss(pid)
            if pss is None:
                readable = False
                break
            total_pss += pss
        self._spent(time.thread_time() - cpu, now, total_rss)
        if readable:
            self._max_pss = max(self._max_pss or 0, total_pss)

    def _spent(self, cost: float, now: float, total_rss: int) -> None:
        """A sweep's bookkeeping: its CPU cost leaves the budget and sizes the next wait."""
        self._pss_cost, self._pss_last = cost, now
        self._credit -= cost
        self._pss_samples += 1
        self._pss_seconds += cost
        self._rss_covered = max(self._rss_covered, total_rss)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._poll()
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._started = self._last_poll = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, name="peak-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._poll(final=True)  # a last look, so a process that is still alive reports its VmHWM and PSS
        self._seconds = time.perf_counter() - self._started

    def result(self) -> MemoryPeaks:
        per = {f"{pid} {self._labels.get(pid, '?')}": peak for pid, peak in self._peaks.items()}
        return MemoryPeaks(per, sum(self._peaks.values()), self._max_rss, self._max_pss, self._samples,
                           self._seconds, self._pss_samples, self._pss_seconds)


# ---------------------------------------------------------------- growth exponents and tables

def growth_exponent(sizes: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of log(value) against log(size): 1.0 is linear growth, 2.0 quadratic."""
    pairs = [(math.log(s), math.log(v)) for s, v in zip(sizes, values, strict=True) if s > 0 and v > 0]
    if len(pairs) < 2:
        return float("nan")
    x = np.array([p[0] for p in pairs])
    y = np.array([p[1] for p in pairs])
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; numbers right-aligned, floats to two decimals (none above 100)."""
    numeric = [all(isinstance(r[i], (int, float)) or r[i] is None for r in rows) if rows else False
               for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- synthetic party tables

def ids_for(start: int, stop: int, prefix: str = "C") -> np.ndarray:
    """Ids ``C%09d`` for rows [start, stop) as a fixed-width bytes array (vectorised, no Python strings)."""
    if stop > 10**9:
        raise ValueError("ids C%09d hold at most 10**9 rows")
    n = np.arange(start, stop, dtype=np.int64)
    digits = (n[:, None] // (10 ** np.arange(8, -1, -1, dtype=np.int64))) % 10 + ord("0")
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    out = np.empty((len(n), len(head) + 9), dtype=np.uint8)
    out[:, :len(head)] = head
    out[:, len(head):] = digits
    return out.view(f"S{len(head) + 9}").ravel()


def _blocks(n_rows: int, block_rows: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n_rows, block_rows):
        yield start, min(n_rows, start + block_rows)


def _coefficients(total_features: int, seed: int) -> np.ndarray:
    """Fixed true weights: a few strong, most weak, scaled so the logit's spread is about 1.5."""
    rng = np.random.default_rng([seed, 17])
    w = rng.normal(0.0, 1.0, total_features) * (rng.random(total_features) < 0.4)
    w[: min(3, total_features)] = [1.0, -0.8, 0.6][: min(3, total_features)]
    return (w * 1.5 / max(1e-9, float(np.linalg.norm(w)))).astype(np.float64)


def _writer(path: Path, schema: Any, fmt: str) -> Any:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        return pq.ParquetWriter(str(path), schema, compression="snappy")
    if fmt == "csv":
        return pacsv.CSVWriter(str(path), schema)
    raise ValueError(f"unknown format {fmt!r}; use 'parquet' or 'csv'")


def _write(paths: Mapping[str, Path], n_rows: int, parties: Mapping[str, int], *, label_party: str | None,
           prefixes: Mapping[str, str], seed: int, block_rows: int, fmt: str, id_column: str,
           label_column: str, first_row: int) -> dict[str, Path]:
    """The one writer: each block draws every party's features at once, so the label sees them all."""
    import pyarrow as pa

    names = list(parties)
    if label_party is not None and label_party not in parties:
        raise ValueError(f"label party {label_party!r} is not one of {names}")
    coef = _coefficients(sum(parties.values()), seed)
    schemas = {}
    for name in names:
        fields = [pa.field(id_column, pa.string())]
        fields += [pa.field(f"{prefixes[name]}f{j:02d}", pa.float32()) for j in range(parties[name])]
        if name == label_party:
            fields.append(pa.field(label_column, pa.int8()))
        schemas[name] = pa.schema(fields)
    parts = {name: p.with_name(p.name + ".part") for name, p in paths.items()}
    for p in parts.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    writers = {name: _writer(parts[name], schemas[name], fmt) for name in names}
    try:
        for start, stop in _blocks(n_rows, block_rows):
            rng = np.random.default_rng([seed, first_row + start])
            x = rng.standard_normal((stop - start, len(coef)), dtype=np.float32)
            logit = x.astype(np.float64) @ coef - 1.0
            label = (rng.random(stop - start) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
            ids = pa.array(ids_for(first_row + start, first_row + stop), type=pa.binary()).cast(pa.string())
            col = 0
            for name in names:
                k = parties[name]
                arrays = [ids] + [pa.array(x[:, col + j]) for j in range(k)]
                if name == label_party:
                    arrays.append(pa.array(label))
                writers[name].write_table(pa.Table.from_arrays(arrays, schema=schemas[name]))
                col += k
    finally:
        for w in writers.values():
            w.close()
    for name in names:  # nothing half-written: the final names appear only once every block is in
        os.replace(parts[name], paths[name])
    return dict(paths)


def write_party_tables(out_dir: str | Path, n_rows: int, parties: Mapping[str, int], *,
                       label_party: str | None = None, seed: int = 0, block_rows: int = BLOCK_ROWS,
                       fmt: str = "parquet", id_column: str = "id", label_column: str = "label",
                       first_row: int = 0) -> dict[str, Path]:
    """Vertically split tables over the same ``n_rows`` customers: ``parties`` maps name -> feature count.

    Every party's file ``<out_dir>/<name>.parquet`` holds ``id`` and its features ``<name>_f00..``;
    ``label_party`` (default: the first party) also holds ``label``, drawn from a logistic model over ALL
    parties' features, so joint training beats each party alone. Written block by block: memory is one
    block, whatever ``n_rows``. ``first_row`` offsets the ids (disjoint customers, PSI overlaps).
    """
    out = Path(out_dir)
    suffix = ".parquet" if fmt == "parquet" else ".csv"
    return _write({name: out / f"{name}{suffix}" for name in parties}, n_rows, parties,
                  label_party=label_party or next(iter(parties)), prefixes={n: f"{n}_" for n in parties},
                  seed=seed, block_rows=block_rows, fmt=fmt, id_column=id_column, label_column=label_column,
                  first_row=first_row)


def write_table(path: str | Path, n_rows: int, features: int, *, seed: int = 0, first_row: int = 0,
                block_rows: int = BLOCK_ROWS, fmt: str | None = None, with_label: bool = True) -> Path:
    """One party's table (``id``, ``f00..``, ``label``) at ``path`` (.parquet or .csv), block by block."""
    path = Path(path)
    fmt = fmt or ("csv" if path.suffix == ".csv" else "parquet")
    return _write({"t": path}, n_rows, {"t": features}, label_party="t" if with_label else None,
                  prefixes={"t": ""}, seed=seed, block_rows=block_rows, fmt=fmt, id_column="id",
                  label_column="label", first_row=first_row)["t"]


def write_horizontal_tables(out_dir: str | Path, rows_per_party: int, features: int, parties: int, *,
                            seed: int = 0, block_rows: int = BLOCK_ROWS, fmt: str = "parquet") -> dict[str, Path]:
    """``parties`` banks with the same columns (``id``, ``f00..``, ``label``), disjoint customers, one
    true model: files ``bank0.parquet``, ``bank1.parquet``, ..."""
    out = Path(out_dir)
    suffix = ".parquet" if fmt == "parquet" else ".csv"
    return {f"bank{i}": write_table(out / f"bank{i}{suffix}", rows_per_party, features, seed=seed,
                                    first_row=i * rows_per_party, block_rows=block_rows, fmt=fmt)
            for i in range(parties)}


# ---------------------------------------------------------------- a shared cache of generated tables

def cache_root() -> Path:
    """Where generated tables are kept between runs: $SAMPAN_SCALE_DATA, else /tmp/sampan-scale-data."""
    return Path(os.environ.get("SAMPAN_SCALE_DATA", "/tmp/sampan-scale-data"))


def _cached(key: str, make: Any) -> dict[str, Path]:
    """Run ``make(dir)`` once per key under a file lock (concurrent benchmarks wait, then reuse)."""
    import fcntl
    import json

    folder = cache_root() / key
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "done.json"
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return {k: Path(v) for k, v in json.loads(done.read_text()).items()}
        paths = make(folder)
        done.write_text(json.dumps({k: str(v) for k, v in paths.items()}))
        return dict(paths)


def cached_party_tables(n_rows: int, parties: Mapping[str, int], *, label_party: str | None = None,
                        seed: int = 0, fmt: str = "parquet") -> dict[str, Path]:
    """`write_party_tables` into the shared cache: the same arguments give the same files, written once."""
    spec = "_".join(f"{name}{k}" for name, k in parties.items())
    key = f"v-{n_rows}-{spec}-{label_party or next(iter(parties))}-s{seed}-{fmt}"
    return _cached(key, lambda d: write_party_tables(d, n_rows, parties, label_party=label_party, seed=seed,
                                                     fmt=fmt))


def cached_horizontal_tables(rows_per_party: int, features: int, parties: int, *, seed: int = 0,
                             fmt: str = "parquet") -> dict[str, Path]:
    """`write_horizontal_tables` into the shared cache (``bank0..``, ``rows_per_party`` rows each)."""
    key = f"h-{rows_per_party}-f{features}-p{parties}-s{seed}-{fmt}"
    return _cached(key, lambda d: write_horizontal_tables(d, rows_per_party, features, parties, seed=seed,
                                                          fmt=fmt))
