"""Deployed per-round time over an emulated WAN: plain FedAvg and SecAgg+ with 3 and 10 banks.

Each party agent dials the coordinator through its own TCP delay relay (asyncio, on a thread of this
process) that holds every chunk 20 ms in each direction before passing it on: a 40 ms round trip, no
bandwidth cap. This kernel has no netem, so the delay is the relay's; the processes run on loopback
(``unshare -rn`` works here, but a private network namespace adds nothing a relay does not, since the
delay must be made in user space either way). Coordinator and agents are separate processes with mutual
TLS, exactly as deployed (`sampan.deploy.local`).

Per run: seconds per round from the run store (the workflow times each round), and requests per party
per round from the coordinator's wire tap (each exchange sends one request to every party, so this is
the number of exchanges, i.e. round trips, a round costs): the median over the rounds' steps, with what
the run adds once (the final model's evaluation) reported apart as ``exchanges_once_per_run``. A round's time over 40 ms
gives its
round-trip count as the network sees it.

Usage::

    .venv/bin/python bench/wan_bench.py                    # 3 and 10 parties, plain and SecAgg+
    .venv/bin/python bench/wan_bench.py --parties 3 --rounds 3 --delay-ms 20

Writes bench/results/wan.json (wan-<delay>ms.json for another delay; ``--delay-ms 0`` separates the
round's compute from its waiting on the network).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


class DelayRelay:
    """A TCP forwarder on 127.0.0.1 that delivers every chunk `delay_s` after it arrived, in order, each way."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        self.target_port, self.delay_s = target_port, delay_s
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.port = 0
        threading.Thread(target=self._run, args=(ready,), daemon=True, name="wan-relay").start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                chunk = await reader.read(1 << 16)
                await queue.put((time.monotonic() + self.delay_s, chunk))
                if not chunk:
                    break
        finally:
            await sender

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def _schema_dict(schema: Any) -> dict[str, Any]:
    return {"id": schema.id_column, **({"label": schema.label_column} if schema.label_column else {}),
            "features": [{"name": f.name, "kind": f.kind,
                          **({"categories": list(f.categories)} if f.categories else {})}
                         for f in schema.features]}


def _party_files(root: Path, n_parties: int, n_smes: int) -> tuple[dict[str, Path], dict[str, Any]]:
    """The SME consortium's horizontal rows dealt round-robin to `n_parties` banks (one CSV each)."""
    from sampan.data import make_sme_consortium

    consortium = make_sme_consortium(n_smes, seed=11)
    written = consortium.write_csv(root / "source", "horizontal")
    first = next(iter(written))
    schema = _schema_dict(consortium.schema_for(first))
    rows: list[list[str]] = []
    header: list[str] = []
    for path in written.values():
        with open(path, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            rows.extend(reader)
    names = [f"bank_{i:02d}" for i in range(n_parties)]
    out = {}
    for i, name in enumerate(names):
        path = root / "data" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows[i::n_parties])
        out[name] = path
    return out, schema


def _requests_by_step(tap: Path, run_id: str, party: str) -> dict[int, int]:
    """Requests the coordinator sent `party` during the run, by step (step 0, open/close of the run, left out).

    A step is a round number: round r's SecAgg+ instance (fit, with model r-1's evaluation carried in its
    vector) is sent under step r; the final model's own evaluation, once per run, lands on a step of its
    own or on the last round's, which is why a round's count is the median over the steps, not the mean.
    """
    from sampan.deploy.coordinator import read_tap
    from sampan.transport.grpc_envelope import FrameKind, Limits, parse_frame

    limits = Limits()
    counts: dict[int, int] = {}
    for who, direction, raw in read_tap(tap):
        if who != party or direction != "to_party":
            continue
        frame = parse_frame(raw, limits)
        if frame.kind == FrameKind.REQUEST and frame.chunk_index == 0 and frame.run_id == run_id and frame.step >= 1:
            counts[frame.step] = counts.get(frame.step, 0) + 1
    return dict(sorted(counts.items()))


def bench(n_parties: int, rounds: int, delay_ms: float, secure: bool, n_smes: int) -> dict[str, Any]:
    import grpc

    from sampan.deploy.coordinator import TAP_ENV
    from sampan.deploy.local import Agent, Binding, free_port, wait_for_log, write_federation
    from sampan.runtime.store import Store
    from sampan.transport.grpc_client import operator_call
    from sampan.wire import Message

    with TemporaryDirectory(prefix="sampan-wan-") as tmp:
        root = Path(tmp)
        paths, schema = _party_files(root, n_parties, n_smes)
        port = free_port()
        relays = {name: DelayRelay(port, delay_ms / 1000.0) for name in paths}
        files = write_federation(root, {n: {"loans": Binding(str(p), schema)} for n, p in paths.items()}, port=port,
                                 dial={n: f"127.0.0.1:{r.port}" for n, r in relays.items()},
                                 coordinator={"audit_key": "state/audit-key.pem"})
        tap = root / "coordinator.tap"
        coordinator = Agent("coordinator", files.coordinator_config, env={TAP_ENV: str(tap)})
        agents = [Agent("party", files.party_configs[n]) for n in paths]
        log = files.root / "coordinator" / "coordinator.log"
        try:
            if not wait_for_log(log, "connected from", 120, count=n_parties):
                raise RuntimeError(f"parties did not connect:\n{log.read_text()[-2000:]}")
            op = files.operator
            creds = grpc.ssl_channel_credentials(op["ca"].read_bytes(), op["key"].read_bytes(), op["cert"].read_bytes())

            def call(method: str, meta: dict[str, Any]) -> dict[str, Any]:
                reply = operator_call(files.address, creds, method, Message("", 0, "ops", "coordinator", "x",
                                                                            meta=meta),
                                      target_name="localhost", timeout=60)
                if reply.is_error:
                    raise RuntimeError(reply.meta.get("error"))
                return dict(reply.meta)

            run = {"run": {"name": f"wan-{n_parties}-{'secagg' if secure else 'plain'}", "rounds": rounds, "seed": 3},
                   "model": {"kind": "logistic"}, "training": {"learning_rate": 0.1, "batch_size": 64},
                   "deploy": {"dataset": "loans", "parties": list(paths)}}
            if secure:
                run["secure_aggregation"] = {"enabled": True, "min_contributors": 3}
            started = time.monotonic()
            run_id = call("Submit", {"config": run})["run_id"]
            while True:
                status = call("Status", {"run_id": run_id})
                if status["status"] in ("completed", "failed", "cancelled"):
                    break
                time.sleep(0.2)
            wall = time.monotonic() - started
            if status["status"] != "completed":
                raise RuntimeError(f"run {run_id} {status['status']}: {status['error']}")
            store = Store.open(f"sqlite:///{files.root / 'coordinator' / 'state' / 'coordinator.db'}",
                               audit_key=files.root / "coordinator" / "state" / "audit-key.pem")
            seconds = [r.seconds for r in store.rounds(run_id)]
            store.close()
        finally:
            for agent in [coordinator, *agents]:
                agent.stop()
            for relay in relays.values():
                relay.close()
        by_step = _requests_by_step(tap, run_id, next(iter(paths)))
        per_round = statistics.median([by_step.get(step, 0) for step in range(1, rounds + 1)])
        total = sum(by_step.values())
        median = statistics.median(seconds)
        return {"parties": n_parties, "secure_aggregation": secure, "rounds": rounds, "delay_ms_each_way": delay_ms,
                "round_seconds": [round(s, 4) for s in seconds], "median_round_s": round(median, 4),
                "round_trips_by_time": round(median / (2 * delay_ms / 1000.0), 1) if delay_ms else None,
                "exchanges_per_round": round(per_round, 2), "exchanges_by_step": by_step,
                "exchanges_once_per_run": total - int(per_round) * rounds, "run_wall_s": round(wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parties", type=int, nargs="*", default=[3, 10])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--n-smes", type=int, default=6000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    results = []
    for n in args.parties:
        for secure in (False, True):
            result = bench(n, args.rounds, args.delay_ms, secure, args.n_smes)
            results.append(result)
            trips = (f"  (= {result['round_trips_by_time']:4.1f} round trips of {2 * args.delay_ms:.0f} ms)"
                     if args.delay_ms else "  (no added delay)")
            print(f"{n:>3} parties  {'SecAgg+' if secure else 'plain  '}  "
                  f"median round {result['median_round_s'] * 1000:7.1f} ms"
                  f"{trips}"
                  f"  exchanges/round {result['exchanges_per_round']:.1f} "
                  f"(+{result['exchanges_once_per_run']} once per run)"
                  f"  rounds {result['round_seconds']}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                      f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}",
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "command": " ".join(["bench/wan_bench.py", *sys.argv[1:]]), "network": "loopback + asyncio delay relay",
           "results": results}
    path = RESULTS / ("wan.json" if args.delay_ms == 20 else f"wan-{args.delay_ms:g}ms.json")
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
