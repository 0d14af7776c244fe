"""PSI benchmark: Sampan ECDH-PSI (mode "both", in-process transport, sealed envelopes) vs openmined.psi.

Run from the repository root:
    .venv/bin/python bench/psi_bench.py            # 100k x 100k (Sampan and openmined.psi) and 1M x 1M (Sampan)
    .venv/bin/python bench/psi_bench.py --quick    # 10k x 10k only, both libraries: a smoke run
    .venv/bin/python bench/psi_bench.py --skip-openmined --sizes 1000000
Sets have 50% overlap, ids like "BR00000042". Sampan runs end to end through `run_psi` (both parties in
this process, every payload sealed and encoded as on the wire). openmined.psi (bench/requirements-psi.txt,
a C++ ECDH-PSI on P-256) is installed only in a benchmark venv (.venv-bench, else .venv-psi) and runs
in a child process of that interpreter, timed from key creation to the client's intersection,
including protobuf serialisation of its three messages. Its server/client roles reveal the
intersection to the client only; Sampan's "both" mode reveals it to both and does the same number of
scalar multiplications (4 per pair of items).
Ratios are measured side by side in one run; absolute seconds vary on a shared machine (the load
average and the machine's X25519 rate before each run are recorded, so efficiency = achieved rate /
machine rate shows protocol overhead apart from noise). Results go to bench/results/psi.json
(psi_quick.json with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BENCH_VENVS = (ROOT / ".venv-bench", ROOT / ".venv-psi")

_OPENMINED_CHILD = r"""
import json, sys, time
import private_set_intersection.python as psi
n = int(sys.argv[1])
server_items = ["BR%08d" % i for i in range(n)]
client_items = ["BR%08d" % i for i in range(n // 2, n + n // 2)]
t0 = time.perf_counter()
server = psi.server.CreateWithNewKey(True)
client = psi.client.CreateWithNewKey(True)
setup = psi.ServerSetup()
setup.ParseFromString(server.CreateSetupMessage(1e-9, len(client_items), server_items,
                                                psi.DataStructure.RAW).SerializeToString())
request = psi.Request()
request.ParseFromString(client.CreateRequest(client_items).SerializeToString())
response = psi.Response()
response.ParseFromString(server.ProcessRequest(request).SerializeToString())
found = client.GetIntersection(setup, response)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "cardinality": len(found), "version": psi.__version__}))
"""


def ids(n: int, offset: int) -> Any:
    import numpy as np

    return np.array([f"BR{i:08d}" for i in range(offset, offset + n)], dtype=object)


class TimedApp:
    """Wraps a PartyApp to time each handler: the per-step breakdown in the results."""

    def __init__(self, app: Any, times: dict[str, float]) -> None:
        self.app, self.name, self.times = app, app.name, times

    def handle(self, message: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.app.handle(message)
        finally:
            key = f"{self.name}:{message.kind}"
            self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - started


def machine_rate(n: int = 20_000) -> float:
    """X25519 multiplications per second this machine delivers right now (all workers, no protocol).

    The shared benchmark machine's two vCPUs give anywhere from one to two cores' worth of throughput;
    measuring it next to each run separates protocol overhead from machine noise.
    """
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from sampan.vertical.psi import blind, hash_to_curve

    points = hash_to_curve([b"calibration-%d" % i for i in range(n)])
    started = time.perf_counter()
    blind(points, X25519PrivateKey.generate())
    return n / (time.perf_counter() - started)


def run_sampan(n: int) -> dict[str, Any]:
    from sampan.core.party import PartyApp
    from sampan.crypto.channel import PartyKeys, SealedChannels
    from sampan.transport.inprocess import InProcessTransport
    from sampan.vertical.psi import run_psi
    from sampan.vertical.psi_party import PsiParty

    a_ids, b_ids = ids(n, 0), ids(n, n // 2)
    parties = {"bank": PsiParty("bank", a_ids), "payments": PsiParty("payments", b_ids)}
    keys = {name: PartyKeys.generate() for name in parties}
    public = {name: k.public_bytes for name, k in keys.items()}
    times: dict[str, float] = {}
    apps: dict[str, Any] = {}
    for name, party in parties.items():
        app = PartyApp(name)
        party.register(app)
        party.channels = SealedChannels(name, keys[name], public, "bench",
                                        roles={"bank": "label_holder", "payments": "partner"})
        apps[name] = TimedApp(app, times)
    transport = InProcessTransport(apps)
    rate = machine_rate()
    load = os.getloadavg()[0]
    started = time.perf_counter()
    outcome = run_psi(transport, "bench", "bank", "payments", "both")
    seconds = time.perf_counter() - started
    ra, rb = parties["bank"].rows["payments"], parties["payments"].rows["bank"]
    if outcome.cardinality != n - n // 2 or not (a_ids[ra] == b_ids[rb]).all():
        raise SystemExit(f"Sampan PSI gave a wrong intersection at n={n}")
    return {"seconds": round(seconds, 3), "cardinality": outcome.cardinality, "load_before": round(load, 2),
            "multiplications_per_second": round(4 * n / seconds),
            "machine_x25519_per_second_before": round(rate),
            "efficiency_vs_machine": round(4 * n / seconds / rate, 2),
            "steps": {k: round(v, 3) for k, v in times.items()},
            "bytes": sum(row["bytes"] for row in transport.traffic.summary())}


def openmined_python() -> str | None:
    try:
        import private_set_intersection.python  # noqa: F401

        return sys.executable
    except ImportError:
        pass
    for venv in BENCH_VENVS:
        python = venv / "bin" / "python"
        if python.exists() and subprocess.run([str(python), "-c", "import private_set_intersection.python"],
                                              capture_output=True).returncode == 0:
            return str(python)
    return None


def run_openmined(python: str, n: int) -> dict[str, Any]:
    load = os.getloadavg()[0]
    out = subprocess.run([python, "-c", _OPENMINED_CHILD, str(n)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["cardinality"] != n - n // 2:
        raise SystemExit(f"openmined.psi gave a wrong intersection at n={n}")
    return {**result, "seconds": round(result["seconds"], 3), "load_before": round(load, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10k x 10k only (smoke run)")
    parser.add_argument("--sizes", type=int, nargs="+", help="set sizes to run with Sampan (default 100k 1M)")
    parser.add_argument("--compare", type=int, default=None,
                        help="size compared with openmined.psi (default 100k, 10k with --quick)")
    parser.add_argument("--repeats", type=int, default=3, help="Sampan runs at the compared size (median)")
    parser.add_argument("--skip-openmined", action="store_true")
    args = parser.parse_args()
    compare = args.compare or (10_000 if args.quick else 100_000)
    sizes = args.sizes or ([10_000] if args.quick else [100_000, 1_000_000])

    from sampan.vertical._parallel import default_workers

    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "workers": default_workers(), "python": platform.python_version(),
                    "platform": platform.platform(), "processor": platform.processor()},
        "overlap": 0.5, "mode": "both", "sampan": {}, "openmined_psi": {}, "speedup": {},
    }
    python = None if args.skip_openmined else openmined_python()
    if not args.skip_openmined and python is None:
        print("openmined.psi not found: install bench/requirements-psi.txt into .venv-bench or .venv-psi",
              file=sys.stderr)
    for n in sizes:
        runs = [run_sampan(n) for _ in range(args.repeats if n == compare else 1)]
        report["sampan"][str(n)] = {"runs": runs, "median_seconds": statistics.median(r["seconds"] for r in runs)}
        print(f"sampan        n={n:>9,}  " + "  ".join(f"{r['seconds']:.2f}s" for r in runs)
              + "   (machine X25519/s before each: " + ", ".join(f"{r['machine_x25519_per_second_before']:,}"
                                                          for r in runs) + ")", flush=True)
        if n == compare and python is not None:
            om = run_openmined(python, n)
            report["openmined_psi"][str(n)] = om
            print(f"openmined.psi n={n:>9,}  {om['seconds']:.2f}s", flush=True)
            report["speedup"][str(n)] = round(om["seconds"] / report["sampan"][str(n)]["median_seconds"], 2)

    print()
    print(f"{'n x n (50% overlap)':>22} | {'Sampan s':>9} | {'openmined.psi s':>15} | {'speed-up':>8}")
    print("-" * 65)
    for n in sizes:
        ours = report["sampan"][str(n)]["median_seconds"]
        theirs = report["openmined_psi"].get(str(n), {}).get("seconds")
        ratio = report["speedup"].get(str(n))
        print(f"{n:>22,} | {ours:>9.2f} | {theirs if theirs is not None else '-':>15} | "
              f"{(str(ratio) + 'x') if ratio else '-':>8}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("psi_quick.json" if args.quick else "psi.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
