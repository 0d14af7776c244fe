"""PSI at a bank's scale: 1M x 1M and 10M x 10M, each party in its own process, peak memory per process.

Run from the repository root (10M needs the shared lock: it holds several GB for a quarter of an hour):
    .venv/bin/python bench/psi_scale_bench.py --sizes 1000000
    flock /work/helpers/bench.lock .venv/bin/python bench/psi_scale_bench.py --sizes 10000000
    .venv/bin/python bench/psi_scale_bench.py --sizes 20000 --skip-contenders     # smoke run

Sampan's default ECDH PSI (mode "both") runs through `run_psi` over `MultiprocessTransport(pinned=True)`:
the label holder and the partner each live in their own forked process, which builds its own ids
(``BR%08d``, 50% overlap, shuffled) as a fixed-width array, as a party that loaded its table would; only
`sampan.wire` bytes of sealed envelopes cross between processes. Reported per size: wall time, the time of
each protocol step, peak RSS of each party process (ru_maxrss, the process itself) and of its largest PSI
worker (the fork-based workers share the party's pages copy-on-write, so the two are not additive), and the
coordinator's peak RSS.

The reference rate is measured in the same run, with the same library call the protocol uses
(`cryptography`'s X25519 exchange through `psi_points.blind`, over every core the party may use):
the protocol needs 4 multiplications per pair of items (each side blinds its own ids and the other's
points), so ``ideal = 4 n / rate`` and ``ratio = wall / ideal`` (1.0 = no overhead beyond X25519;
hash to curve, sealing, shuffling and matching are the overhead).

Contenders run in the same invocation: if `bench/psi_rr22_contenders.py` exists, its ``CONTENDERS`` list of
``(name, callable(n, overlap) -> dict)`` (the RR22 backend, spu's own RR22) runs at every size;
openmined.psi (bench/requirements-psi.txt, its own venv, see bench/psi_bench.py) at 1M and below only.
Results: bench/results/psi_scale.json.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
OVERLAP = 0.5


def bank_ids(n: int, offset: int, seed: int) -> np.ndarray:
    """``BR%08d`` ids offset..offset+n as an ``S10`` array, shuffled: built vectorised, no Python strings."""
    if offset + n > 10**8:
        raise ValueError("BR%08d ids stop at 10^8")
    numbers = np.arange(offset, offset + n, dtype=np.int64)
    raw = np.empty((n, 10), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = ord("B"), ord("R")
    for col in range(9, 1, -1):
        raw[:, col] = 48 + numbers % 10
        numbers //= 10
    ids = raw.view("S10").ravel()
    return ids[np.random.default_rng(seed).permutation(n)]


def peak_mb(who: int = resource.RUSAGE_SELF) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)  # Linux: KiB


def raw_rate(n: int = 200_000) -> float:
    """X25519 multiplications per second over every core right now, via the protocol's own call."""
    from sampan.vertical.psi_party import _new_scalar
    from sampan.vertical.psi_points import blind, hash_to_curve

    points = hash_to_curve(bank_ids(min(n, 20_000), 0, 1))
    points = np.resize(points, (n, 32))  # repeats are fine: every point is a valid curve point
    started = time.perf_counter()
    blind(points, _new_scalar())
    return n / (time.perf_counter() - started)


class _ProbeKey:
    """Memory probe only: a 32-byte XOR mask standing in for an X25519 scalar (XOR commutes, like blinding)."""

    def __init__(self) -> None:
        self.mask = np.frombuffer(os.urandom(32), dtype=np.uint8)


def _probe_work(key: Any, ids: Any, points: Any = None) -> Any:
    """Memory probe only: SHA-256 of each id instead of hash to curve, XOR instead of X25519; same shapes."""
    n_ids = len(ids)

    def run(start: int, stop: int) -> bytes:
        parts = []
        if start < n_ids:
            chunk = ids[start:min(stop, n_ids)]
            items = chunk.tolist() if isinstance(chunk, np.ndarray) else chunk
            raw = np.frombuffer(b"".join(hashlib.sha256(i).digest() for i in items), np.uint8).reshape(-1, 32)
            parts.append((raw ^ key.mask).tobytes() if key is not None else raw.tobytes())
        if stop > n_ids and points is not None:
            parts.append((points[max(start - n_ids, 0):stop - n_ids] ^ key.mask).tobytes())
        return b"".join(parts)
    return run


def install_memory_probe() -> None:
    """Swap X25519 and hash to curve for cheap commuting stand-ins (before the party processes fork).

    Every array, part, seal, shuffle and match is the real code, so peak memory is the protocol's; the
    seconds are not (no curve arithmetic). Reported under "memory_probe", never as a timing.
    """
    from sampan.vertical import psi_party, psi_points

    psi_points._work = _probe_work  # type: ignore[assignment]
    psi_party._new_scalar = _ProbeKey  # type: ignore[assignment]


def _party_app(name: str) -> Any:
    """A party whose ids are built inside its own process (the `bench.load` request), plus a result probe."""
    from sampan.core.party import PartyApp
    from sampan.vertical.psi_party import PsiParty

    party = PsiParty(name, None)
    app = PartyApp(name)
    party.register(app)

    def load(request: Any) -> Any:
        n, offset = int(request.meta["n"]), int(request.meta["offset"])
        party.ids = bank_ids(n, offset, seed=offset + 7)
        party._prepared = None
        return request.reply("bench.load", meta={"rss_mb": peak_mb()})

    def probe(request: Any) -> Any:
        peer = str(request.meta["peer"])
        prepared = party._prepare()
        rows = party.rows[peer]
        digest = hashlib.sha256(prepared.ids[rows].tobytes()).hexdigest()
        return request.reply("bench.probe", meta={
            "cardinality": len(rows), "aligned_sha256": digest, "peak_rss_mb": peak_mb(),
            "peak_worker_rss_mb": peak_mb(resource.RUSAGE_CHILDREN)})

    app.register("bench.load", load)
    app.register("bench.probe", probe)
    return app, party


class _TimedTransport:
    """Times each coordinator request by kind (the per-step breakdown) around a real transport."""

    def __init__(self, inner: Any, times: dict[str, float]) -> None:
        self.inner, self.times = inner, times
        self.coordinator = getattr(inner, "coordinator", "coordinator")

    def exchange(self, messages: Any) -> Any:
        messages = list(messages)
        started = time.perf_counter()
        replies = list(self.inner.exchange(messages))
        key = messages[0].kind if messages else "?"
        self.times[key] = round(self.times.get(key, 0.0) + time.perf_counter() - started, 3)
        return iter(replies)


def run_default(n: int) -> dict[str, Any]:
    """Sampan's ECDH default, label holder and partner in their own processes."""
    from sampan.crypto.channel import PartyKeys, SealedChannels
    from sampan.transport.multiprocess import MultiprocessTransport
    from sampan.vertical.psi import run_psi
    from sampan.wire import Message

    names = ("bank", "payments")
    keys = {name: PartyKeys.generate() for name in names}
    public = {name: k.public_bytes for name, k in keys.items()}
    apps = {}
    for name in names:
        app, party = _party_app(name)
        party.channels = SealedChannels(name, keys[name], public, "bench",
                                        roles={"bank": "label_holder", "payments": "partner"})
        apps[name] = app
    transport = MultiprocessTransport(apps, pinned=True)
    try:
        offsets = {"bank": 0, "payments": n - int(n * OVERLAP)}
        loads = list(transport.exchange(Message("bench", 0, "coordinator", p, "bench.load",
                                                meta={"n": n, "offset": offsets[p]}) for p in names))
        times: dict[str, float] = {}
        started = time.perf_counter()
        outcome = run_psi(_TimedTransport(transport, times), "bench", "bank", "payments", "both")
        seconds = time.perf_counter() - started
        probes = {r.sender: r.meta for r in transport.exchange(
            Message("bench", 0, "coordinator", p, "bench.probe", meta={"peer": q})
            for p, q in (("bank", "payments"), ("payments", "bank")))}
    finally:
        transport.close()
    expected = int(n * OVERLAP)
    if not (outcome.cardinality == expected == probes["bank"]["cardinality"] == probes["payments"]["cardinality"]
            and probes["bank"]["aligned_sha256"] == probes["payments"]["aligned_sha256"]):
        raise SystemExit(f"Sampan PSI gave a wrong or misaligned intersection at n={n}")
    return {"seconds": round(seconds, 2), "cardinality": outcome.cardinality, "steps": times,
            "rss_after_load_mb": {r.sender: r.meta["rss_mb"] for r in loads},
            "peak_rss_mb": {p: probes[p]["peak_rss_mb"] for p in names},
            "peak_worker_rss_mb": {p: probes[p]["peak_worker_rss_mb"] for p in names},
            "coordinator_peak_rss_mb": peak_mb()}


def contenders(skip: bool) -> list[tuple[str, Any]]:
    """The RR22 contenders another module provides, if present (pluggable: this script does not need them)."""
    path = BENCH / "psi_rr22_contenders.py"
    if skip or not path.exists():
        return []
    spec = importlib.util.spec_from_file_location("psi_rr22_contenders", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.CONTENDERS)


def openmined(n: int) -> dict[str, Any] | None:
    sys.path.insert(0, str(BENCH))
    import psi_bench  # bench/psi_bench.py: the openmined.psi child and its venv lookup

    python = psi_bench.openmined_python()
    return None if python is None else psi_bench.run_openmined(python, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--skip-contenders", action="store_true", help="Sampan's default only")
    parser.add_argument("--rate-items", type=int, default=200_000, help="points in the raw X25519 measurement")
    parser.add_argument("--out", type=Path, default=None,
                        help="results (default bench/results/psi_scale.json; psi_scale_probe.json with --memory-probe)")
    parser.add_argument("--memory-probe", action="store_true",
                        help="peak memory only: X25519 and hash to curve replaced by commuting XOR/SHA-256 stand-ins")
    args = parser.parse_args()
    if args.out is None:
        args.out = RESULTS / ("psi_scale_probe.json" if args.memory_probe else "psi_scale.json")
    if args.memory_probe:
        install_memory_probe()
        for n in args.sizes:
            started = time.perf_counter()
            row = run_default(n)
            row["note"] = "memory probe: stand-ins for X25519 and hash to curve; seconds are not PSI timings"
            row["probe_seconds"] = round(time.perf_counter() - started, 1)
            print(json.dumps({str(n): row}), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            runs = json.loads(args.out.read_text())["runs"] if args.out.exists() else {}
            runs[str(n)] = row
            args.out.write_text(json.dumps({"memory_probe": True, "runs": runs}, indent=2) + "\n")
        return

    from sampan.vertical._parallel import default_workers

    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "overlap": OVERLAP, "mode": "both",
        "machine": {"cpus": os.cpu_count(), "workers": default_workers(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "runs": {},
    }
    rivals = contenders(args.skip_contenders)
    for n in args.sizes:
        row: dict[str, Any] = {"load_before": round(os.getloadavg()[0], 2)}
        rate_before = raw_rate(args.rate_items)
        row["default"] = run_default(n)
        rate_after = raw_rate(args.rate_items)
        rate = (rate_before + rate_after) / 2
        ideal = 4 * n / rate
        row["raw_x25519_per_second"] = {"before": round(rate_before), "after": round(rate_after)}
        row["ideal_seconds_at_raw_rate"] = round(ideal, 2)
        row["default_over_raw"] = round(row["default"]["seconds"] / ideal, 3)
        print(f"n={n:>11,}  default {row['default']['seconds']:.1f}s  raw-rate ideal {ideal:.1f}s  "
              f"ratio {row['default_over_raw']:.2f}  peak RSS {row['default']['peak_rss_mb']} MB", flush=True)
        for name, run in rivals:
            try:
                row[name] = run(n, OVERLAP)
            except Exception as exc:  # noqa: BLE001 - a contender's failure is reported, not fatal
                row[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"n={n:>11,}  {name}: {row[name]}", flush=True)
        if n <= 1_000_000 and not args.skip_contenders:
            om = openmined(n)
            row["openmined_psi"] = om if om is not None else {"error": "openmined.psi not installed"}
            print(f"n={n:>11,}  openmined.psi: {row['openmined_psi']}", flush=True)
        report["runs"][str(n)] = row
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")  # after every size: a long run keeps its part
    print(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
