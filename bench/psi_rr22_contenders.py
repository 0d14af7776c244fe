"""RR22 contenders for bench/psi_scale_bench.py: Sampan's RR22 backend and spu's own RR22, side by side.

``CONTENDERS = [(name, fn)]``, each ``fn(n, overlap) -> {"seconds", "peak_rss_mb", "intersection", ...}``:

* "rr22 backend": `sampan.vertical.psi_rr22.run_rr22` in mode "both" over `MultiprocessTransport(pinned=True)`:
  label holder and partner each in their own process with ``BR%08d`` ids (shuffled, fixed-width array) built
  there; each starts its spu worker (.venv-spu) and tunnel, every link byte goes sealed through the coordinator.
  Seconds: `run_rr22` end to end (side files, worker start, the tunnelled protocol, mapping back to rows, the
  cross-check). Peak RSS: per party process, plus its spu worker (the worker is the party's child).
* "spu rr22 native": the same worker script, both ranks linked directly on 127.0.0.1 (spu's own brpc link, no
  Sampan), the raw ids in CSV files written beforehand (spu's own input form). Seconds: both processes from
  start to exit. Peak RSS: per worker (wait4).

Both need .venv-spu (tools/install_spu.sh). Run alone: ``.venv/bin/python bench/psi_rr22_contenders.py 1000000``.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "src" / "sampan" / "vertical" / "_rr22_worker.py"


def bank_ids(n: int, offset: int, seed: int) -> np.ndarray:
    """``BR%08d`` ids offset..offset+n as a shuffled ``S10`` array (as psi_scale_bench builds them)."""
    numbers = np.arange(offset, offset + n, dtype=np.int64)
    raw = np.empty((n, 10), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = ord("B"), ord("R")
    for col in range(9, 1, -1):
        raw[:, col] = 48 + numbers % 10
        numbers //= 10
    return raw.view("S10").ravel()[np.random.default_rng(seed).permutation(n)]


def _peak_mb(who: int = resource.RUSAGE_SELF) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


def _party_app(name: str) -> Any:
    from sampan.core.party import PartyApp
    from sampan.vertical.psi_party import PsiParty
    from sampan.vertical.psi_rr22_party import register_rr22

    party = PsiParty(name, None)
    app = PartyApp(name)
    party.register(app)
    register_rr22(party, app)

    def load(request: Any) -> Any:
        party.ids = bank_ids(int(request.meta["n"]), int(request.meta["offset"]), int(request.meta["offset"]) + 7)
        party._prepared = None
        party._prepare()
        return request.reply("bench.load", meta={"rss_mb": _peak_mb()})

    def probe(request: Any) -> Any:
        rows = party.rows[str(request.meta["peer"])]
        prepared: Any = party._prepare()
        ids = prepared.ids if hasattr(prepared, "ids") else np.array(prepared[1], dtype=bytes)
        return request.reply("bench.probe", meta={
            "cardinality": len(rows), "aligned_sha256": hashlib.sha256(ids[rows].tobytes()).hexdigest(),
            "peak_rss_mb": _peak_mb(), "worker_peak_rss_mb": _peak_mb(resource.RUSAGE_CHILDREN)})

    app.register("bench.load", load)
    app.register("bench.probe", probe)
    return app, party


def rr22_backend(n: int, overlap: float = 0.5) -> dict[str, Any]:
    """Sampan's RR22 backend, each party in its own process, the link tunnelled through the coordinator."""
    from sampan.crypto.channel import PartyKeys, SealedChannels
    from sampan.transport.multiprocess import MultiprocessTransport
    from sampan.vertical.psi_rr22 import run_rr22
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
        offsets = {"bank": 0, "payments": n - int(n * overlap)}
        list(transport.exchange(Message("bench", 0, "coordinator", p, "bench.load",
                                         meta={"n": n, "offset": offsets[p]}) for p in names))
        started = time.perf_counter()
        outcome = run_rr22(transport, "bench", "bank", "payments", "both")
        seconds = time.perf_counter() - started
        probes = {r.sender: r.meta for r in transport.exchange(
            Message("bench", 0, "coordinator", p, "bench.probe", meta={"peer": q})
            for p, q in (("bank", "payments"), ("payments", "bank")))}
        relayed = sum(int(row["bytes"]) for row in transport.traffic.summary())  # type: ignore[call-overload]
    finally:
        transport.close()
    expected = int(n * overlap)
    if not (outcome.cardinality == expected == probes["bank"]["cardinality"] == probes["payments"]["cardinality"]
            and probes["bank"]["aligned_sha256"] == probes["payments"]["aligned_sha256"]):
        raise SystemExit(f"RR22 backend gave a wrong or misaligned intersection at n={n}")
    per = {p: {"party": probes[p]["peak_rss_mb"], "spu_worker": probes[p]["worker_peak_rss_mb"]} for p in names}
    return {"seconds": round(seconds, 2), "intersection": outcome.cardinality,
            "peak_rss_mb": round(max(v["party"] + v["spu_worker"] for v in per.values()), 1),
            "peak_rss_per_party_mb": per, "coordinator_peak_rss_mb": _peak_mb(), "relayed_bytes": relayed}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spu_native(n: int, overlap: float = 0.5) -> dict[str, Any]:
    """spu's own RR22: the same worker script, both ranks on one machine linked directly (no Sampan)."""
    python = Path(os.environ.get("SAMPAN_SPU_VENV") or ROOT / ".venv-spu") / "bin" / "python"
    with tempfile.TemporaryDirectory(prefix="spu-native-") as tmp:
        work = Path(tmp)
        hosts = [["receiver", f"127.0.0.1:{_free_port()}"], ["sender", f"127.0.0.1:{_free_port()}"]]
        offsets = (0, n - int(n * overlap))
        for rank, offset in enumerate(offsets):
            ids = bank_ids(n, offset, offset + 7)
            with open(work / f"in{rank}.csv", "wb") as handle:
                handle.write(b"id\n")
                for s in range(0, n, 1 << 20):
                    block = ids[s:s + (1 << 20)]
                    handle.write(b"\n".join(block.tolist()) + b"\n")
            (work / f"tmp{rank}").mkdir()
            (work / f"cfg{rank}.json").write_text(json.dumps({
                "rank": rank, "link_id": "native", "parties": hosts, "receiver_rank": 0, "broadcast_result": True,
                "key": "id", "input": str(work / f"in{rank}.csv"), "output": str(work / f"out{rank}.csv"),
                "report": str(work / f"report{rank}.json")}))
        started = time.perf_counter()
        logs = [open(work / f"log{r}", "wb") for r in (0, 1)]  # noqa: SIM115 - closed below
        procs = [subprocess.Popen([str(python), str(WORKER), str(work / f"cfg{r}.json")], cwd=work,  # noqa: S603
                                  env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(work / f"tmp{r}"),
                                       "LC_ALL": "C"}, stdout=logs[r], stderr=subprocess.STDOUT,
                                  stdin=subprocess.PIPE,  # the worker exits when its stdin closes (R15-RR22-7)
                                  start_new_session=True)  # as the backend's parties start theirs: the same
                 # scheduling (a benchmark that lifts its own session's autogroup lifts neither contender's spu)
                 for r in (0, 1)]
        peaks = []
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            peaks.append(round(usage.ru_maxrss / 1024, 1))
        seconds = time.perf_counter() - started
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for handle in logs:
            handle.close()
        for r, proc in enumerate(procs):
            log = (work / f"log{r}").read_bytes()
            for line in log.splitlines():  # spu writes a perfetto trace to /tmp whatever TMPDIR says
                if b"Trace has been written to /tmp/psi_" in line:
                    Path(line.split(b"written to ")[1].rstrip(b".").decode()).unlink(missing_ok=True)
            if proc.returncode != 0:
                raise SystemExit(f"spu native rank {r} failed: {log.decode(errors='replace')[-500:]}")
        report = json.loads((work / "report0.json").read_text())
    if report["intersection"] != int(n * overlap):
        raise SystemExit(f"spu native gave a wrong intersection at n={n}")
    return {"seconds": round(seconds, 2), "intersection": report["intersection"], "peak_rss_mb": max(peaks),
            "peak_rss_per_rank_mb": peaks}


CONTENDERS = [("rr22 backend", rr22_backend), ("spu rr22 native", spu_native)]


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    for _ in range(rounds):
        for label, fn in CONTENDERS:
            print(label, json.dumps(fn(size, 0.5)), flush=True)
