"""Load benchmark of `sampan serve` on loopback: open loop, fixed arrival rate, 32 persistent connections.

    .venv/bin/python bench/serve_bench.py [--rate 500] [--seconds 10] [--connections 32] [--vertical-transport grpc]

In one run, side by side, each at the same offered rate:
  noop        GET /v1/noop of the same app (routing, token check, access-log middleware; no scoring)
  vertical    POST /v1/score, one applicant, a 3-party vertical LR (bank + 2 partners; the partners are
              simulated in the server process and reached through the in-process transport, or with
              --vertical-transport grpc through the coordinator hub with mTLS and the parties' own
              outbound streams, all on loopback)
  horizontal  POST /v1/score, one applicant, a horizontal logistic model scored at the bank

Open loop: request i is due at t0 + i/rate whatever the replies; a due request waits for a free connection
if all 32 are busy, and its latency counts from when it was due (no coordinated omission). The server runs
in its own process (uvicorn, one worker), the load generator (raw asyncio HTTP/1.1) in this one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

N_SMES, SEED = 2500, 7
TOKEN = "bench-token-not-secret"


# --- models (made once, in this process) -------------------------------------------------------------------
def train_models(root: Path) -> dict[str, Any]:
    import sampan
    from sampan.config import parse_config
    from sampan.data import make_sme_consortium
    from sampan.runtime.runner import start_run
    from sampan.runtime.store import Store

    url = f"sqlite:///{root / 'bank.db'}"
    horizontal = sampan.run({"run": {"name": "bench-horizontal", "workflow": "horizontal", "rounds": 2, "seed": SEED,
                                     "store": url, "report_dir": str(root / "rep-h")},
                             "source": {"kind": "consortium", "n_smes": N_SMES}})
    store = Store.open(url)
    vertical = start_run(parse_config({
        "run": {"name": "bench-vertical", "seed": SEED, "workflow": "vertical", "report_dir": str(root / "rep-v")},
        "source": {"kind": "consortium", "n_smes": N_SMES},
        "vertical": {"label_holder": "bank", "models": ["lr"], "test_fraction": 0.2, "val_fraction": 0.2,
                     "lr": {"epochs": 1, "batch_size": 64, "learning_rate": 0.3}}}), store)
    store.close()
    data = make_sme_consortium(N_SMES, seed=SEED)
    bank = data.vertical["bank"]
    ids = [str(i) for i in bank.ids[:500]]
    table = next(iter(data.horizontal.values()))
    rows = []
    for x in table.X[:500]:
        features: dict[str, Any] = {}
        for name, value in zip(table.feature_names, x, strict=True):
            column, sep, category = name.partition("=")
            if not sep:
                features[column] = float(value)
            elif value == 1.0:
                features[column] = category
        rows.append(features)
    return {"store": url, "horizontal": horizontal.model_name, "vertical_run": vertical.run_id, "ids": ids,
            "rows": rows}


# --- the server (its own process) ----------------------------------------------------------------------------
def _vertical_grpc_backend(store: Any, run_id: str, root: Path) -> Any:
    """The vertical session through the coordinator hub (mTLS) with the parties' own outbound streams."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _grpc_loopback import Loopback

    from sampan.serve.service import vertical_backend

    return vertical_backend(store, run_id, "lr", 0.5, connect=lambda apps: Loopback(
        root / "grpc", {n: app.handle for n, app in apps.items()}).transport())


def grpc_server_process(models: dict[str, Any], root: str, port: int) -> None:
    """The --vertical-transport grpc server: the session over the hub built here, one uvicorn process."""
    import logging

    import uvicorn

    from sampan.runtime.store import Store
    from sampan.serve.app import create_app
    from sampan.serve.auth import TokenBook, token_hash

    logging.getLogger("sampan").setLevel(logging.ERROR)
    app = create_app(_vertical_grpc_backend(Store.open(models["store"]), models["vertical_run"], Path(root)),
                     tokens=TokenBook({"bench": token_hash(TOKEN)}))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)


def start_server(target: str, models: dict[str, Any], args: argparse.Namespace, root: Path, port: int) -> Any:
    """`sampan serve --config bank-serve.toml` as a bank runs it (its token file, its workers; the access log
    goes to a file and its cost counts), or for the gRPC variant the hub-backed server in a spawned process."""
    if target == "vertical" and args.vertical_transport == "grpc":
        process = mp.get_context("spawn").Process(target=grpc_server_process, args=(models, str(root), port))
        process.start()
        return process
    from sampan.serve.auth import token_hash

    (root / "tokens.txt").write_text(f"bench:{token_hash(TOKEN)}\n")
    chosen = f'model = "{models["horizontal"]}"' if target == "horizontal" else \
        f'vertical_run = "{models["vertical_run"]}"'
    config = root / f"{target}-serve.toml"
    config.write_text(f'[serve]\nstore = "{models["store"]}"\n{chosen}\nhost = "127.0.0.1"\nport = {port}\n'
                      f'threshold = 0.5\nworkers = {args.workers}\n[serve.auth]\ntokens_file = "tokens.txt"\n')
    log = open(root / f"{target}-server.log", "w")  # noqa: SIM115 - the child's stdout/stderr
    return subprocess.Popen([sys.executable, "-m", "sampan.cli", "serve", "--config", str(config)], stdout=log,
                            stderr=subprocess.STDOUT)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"the server did not listen on port {port} within {timeout_s:.0f} s")


# --- the load generator --------------------------------------------------------------------------------------
def _request(method: str, path: str, body: bytes = b"") -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for k, _, v in (line.partition(":") for line in lines[1:]) if k.lower() == "content-length")
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def open_loop(port: int, requests: list[bytes], rate: float, seconds: float, connections: int
                    ) -> dict[str, Any]:
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    finished = [0.0]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (item := await queue.get()) is not None:
            due, request = item
            writer.write(request)
            statuses[await _response(reader)] += 1
            finished[0] = time.perf_counter()
            latencies.append(finished[0] - due)
        writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    await asyncio.sleep(0.2)  # connections open before the clock starts
    total = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(total):
        due = t0 + i / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        queue.put_nowait((due, requests[i % len(requests)]))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    ms = np.array(latencies) * 1000
    return {"offered": rate, "sent": total, "achieved": len(latencies) / (finished[0] - t0),
            "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "max": float(ms.max()),
            "non_200": sum(n for s, n in statuses.items() if s != 200)}


def _process_tree(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of a process and each of its descendants (Linux /proc)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    tree, grew = {pid}, True
    while grew:
        more = {p for p, (parent, _) in stats.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return {p: stats[p][1] for p in tree if p in stats}


def cpu_seconds(pid: int) -> float:
    """The server's CPU time, uvicorn workers (its children) included: its cost per request, whatever else runs."""
    return sum(_process_tree(pid).values())


def measure(target: str, models: dict[str, Any], args: argparse.Namespace, root: Path) -> dict[str, dict[str, Any]]:
    """Start the server for ``target``; measure its no-op route and its /v1/score at the same rate."""
    port = _free_port()
    process = start_server(target, models, args, root, port)
    try:
        try:
            _wait_listening(port)
        except TimeoutError:
            log = root / f"{target}-server.log"
            print(log.read_text()[-3000:] if log.exists() else "(no server log)")
            raise
        if target == "horizontal":
            bodies = [json.dumps({"applicants": [{"id": str(k), "features": r}]}).encode()
                      for k, r in enumerate(models["rows"])]
        else:
            bodies = [json.dumps({"applicants": [{"id": i}]}).encode() for i in models["ids"]]
        score = [_request("POST", "/v1/score", b) for b in bodies]
        noop = [_request("GET", "/v1/noop")]
        asyncio.run(open_loop(port, score, min(args.rate, 200), 1.0, args.connections))  # warm-up
        out: dict[str, dict[str, Any]] = {}
        for name, requests in (("noop", noop), (target, score)):
            before = cpu_seconds(process.pid)  # type: ignore[arg-type]
            out[name] = asyncio.run(open_loop(port, requests, args.rate, args.seconds, args.connections))
            out[name]["cpu_ms"] = (cpu_seconds(process.pid) - before) * 1000 / out[name]["sent"]  # type: ignore[arg-type]
        return out
    finally:
        tree = _process_tree(process.pid)  # type: ignore[arg-type]
        process.terminate()
        with contextlib.suppress(Exception):
            process.wait(10) if isinstance(process, subprocess.Popen) else process.join(10)
        for pid in tree:  # workers left behind by a master that did not stop them in time
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="offered requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--vertical-transport", choices=("inprocess", "grpc"), default="inprocess")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (in-process variants)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = train_models(root)
        vertical = measure("vertical", models, args, root)
        horizontal = measure("horizontal", models, args, root)
    rows = {"noop (vertical app)": vertical["noop"],
            f"vertical 3-party ({args.vertical_transport})": vertical["vertical"],
            "noop (horizontal app)": horizontal["noop"], "horizontal LR": horizontal["horizontal"]}
    print(f"open loop, {args.rate:.0f} req/s offered for {args.seconds:.0f} s, {args.connections} connections, "
          f"one applicant per request, loopback, {args.workers} uvicorn worker(s)")
    print(f"{'endpoint':34} {'achieved/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'non-200':>8} "
          f"{'server CPU ms/req':>18}")
    for name, r in rows.items():
        print(f"{name:34} {r['achieved']:11.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r['max']:8.2f} {r['non_200']:8d} "
              f"{r['cpu_ms']:18.2f}")
    base = vertical["noop"]
    print(f"vertical/noop: p50 x{vertical['vertical']['p50'] / base['p50']:.2f}, "
          f"p99 x{vertical['vertical']['p99'] / base['p99']:.2f}; horizontal/noop: "
          f"p50 x{horizontal['horizontal']['p50'] / horizontal['noop']['p50']:.2f}, "
          f"p99 x{horizontal['horizontal']['p99'] / horizontal['noop']['p99']:.2f}")


if __name__ == "__main__":
    main()
