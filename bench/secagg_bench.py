"""Secure aggregation (SecAgg+) cost vs a plain sum: 10, 50 and 100 parties, 0 / 10 / 30% dropouts.

Run from the repository root (do not run it while others benchmark on the same machine):
    .venv/bin/python bench/secagg_bench.py                      # defaults: d = 10,000, 3 repeats
    .venv/bin/python bench/secagg_bench.py --dim 1000 --repeats 5
What is timed: one aggregation of one d-vector per party through the in-process transport (every
message encoded and decoded as on the wire), all parties and the coordinator in one process, so the
"total" is the compute of the whole federation for one round; "server" is the coordinator's share of
it (its SecAggServer work; message encoding is counted in the total only). Times are CPU seconds of
this process (time.process_time), which other users of a shared machine disturb far less than wall
time; wall time is recorded in the JSON too. The plain sum is the same parties sending their float64 vector in clear.
Repeats are interleaved
(plain, secure, plain, secure, ...) and the medians are compared side by side; dropped parties fail
at the masked-input step (they advertised keys and sent shares, then vanished: the coordinator must
rebuild their mask keys, the expensive case). No training: the update is a fixed random vector.
Results are printed and written to bench/results/secagg.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sampan.core.party import PartyApp
from sampan.crypto.simulated_ca import simulated_consortium
from sampan.privacy.secagg import SecAggClient, SecAggParams, SecAggServer, choose_neighbours, decode_vector, run_secagg
from sampan.transport import PartyError
from sampan.transport.inprocess import InProcessTransport
from sampan.wire import Message

ROOT = Path(__file__).resolve().parent.parent
THRESHOLD = 0.6


class Timer:
    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.process_time() - start
        return timed


class BenchParty:
    """Answers plain `fit` (its vector in clear) and the five SecAgg+ steps, like a HorizontalParty."""

    def __init__(self, name: str, vector: np.ndarray, identity: Any, verifier: Any) -> None:
        self.name, self.vector = name, vector
        self.client = SecAggClient(name, identity=identity, verifier=verifier)
        self.down_for: str | None = None  # label of the attempt in which this party dies before masking
        self.app = PartyApp(name)
        for kind, fn in (("fit", self.fit), ("secagg_keys", self.keys), ("secagg_share", self.share),
                         ("secagg_consistency", self.consistency), ("secagg_unmask", self.unmask)):
            self.app.register(kind, fn)

    def fit(self, m: Message) -> Message:
        if "secagg" not in m.meta:
            return m.reply("fit_result", arrays={"update": self.vector})
        sa = m.meta["secagg"]
        if self.down_for == sa["label"]:
            raise ConnectionError("dropped before masking")
        return m.reply("fit_result", arrays={"masked": self.client.respond_masked(m.arrays, sa, self.vector,
                                                                                 run_id=m.run_id)})

    def keys(self, m: Message) -> Message:
        return m.reply("secagg_keys", arrays=self.client.respond(m.kind, m.arrays, m.meta, run_id=m.run_id))

    def share(self, m: Message) -> Message:
        return m.reply("secagg_shares", arrays=self.client.respond(m.kind, m.arrays, m.meta, run_id=m.run_id))

    def consistency(self, m: Message) -> Message:
        return m.reply("secagg_consistency", arrays=self.client.respond(m.kind, m.arrays, m.meta, run_id=m.run_id))

    def unmask(self, m: Message) -> Message:
        return m.reply("secagg_unmask", arrays=self.client.respond(m.kind, m.arrays, m.meta, run_id=m.run_id))


def plain_round(transport: InProcessTransport, names: list[str], timer: Timer) -> np.ndarray:
    total: np.ndarray | None = None
    add = timer.wrap(lambda t, u: u.copy() if t is None else t + u)
    for reply in transport.exchange(Message("bench", 1, "coordinator", p, "fit") for p in names):
        total = add(total, reply.arrays["update"])
    assert total is not None
    return total


def secure_round(transport: InProcessTransport, names: list[str], params: SecAggParams, dim: int, label: str,
                 timer: Timer) -> tuple[np.ndarray, SecAggServer]:
    server = SecAggServer(params, names, dim, label, np.random.default_rng(0), round_id=label)
    for attr in ("advertise_requests", "receive_keys", "share_requests", "receive_shares", "masked_requests",
                 "receive_masked", "consistency_requests", "receive_signature", "unmask_requests", "receive_unmask",
                 "result"):
        setattr(server, attr, timer.wrap(getattr(server, attr)))

    def call(kind: str, party: str, arrays: Any, meta: Any) -> dict[str, np.ndarray] | None:
        if kind == "fit":
            meta = {"secagg": dict(meta)}
        try:
            for reply in transport.exchange([Message("bench", 1, "coordinator", party, kind, arrays=dict(arrays),
                                                     meta=dict(meta))]):
                return dict(reply.arrays)
        except (PartyError, ConnectionError):
            return None
        return None

    total = run_secagg(server, call)
    return decode_vector(total, params), server


def traffic_bytes(transport: InProcessTransport) -> int:
    return sum(int(r["bytes"]) for r in transport.traffic.summary())


def measure(n: int, dropout: float, dim: int, repeats: int, neighbours: str) -> dict[str, Any]:
    rng = np.random.default_rng(n)
    names = [f"bank_{i:03d}" for i in range(n)]
    verifier, identities = simulated_consortium(names)
    parties = {p: BenchParty(p, rng.normal(scale=0.01, size=dim), identities[p], verifier) for p in names}
    transport = InProcessTransport({p: party.app for p, party in parties.items()})
    if neighbours == "auto":
        k = choose_neighbours(n, THRESHOLD, max(dropout, 0.05))
    else:
        k = None
    params = SecAggParams(threshold=THRESHOLD, neighbours=k)
    n_drop = int(round(dropout * n))
    plain_t, plain_server_t, secure_t, secure_server_t, plain_bytes, secure_bytes = [], [], [], [], [], []
    plain_wall, secure_wall = [], []
    errors = []
    for rep in range(repeats):
        # Each repeat is a new round with new updates: a party refuses to have one input unmasked over two
        # different survivor sets (the cross-round lock of `sampan.privacy.secagg`).
        for p in names:
            parties[p].vector = rng.normal(scale=0.01, size=dim)
        order = ("plain", "secure") if rep % 2 == 0 else ("secure", "plain")
        for which in order:
            timer = Timer()
            before = traffic_bytes(transport)
            if which == "plain":
                start, wall = time.process_time(), time.perf_counter()
                total = plain_round(transport, names, timer)
                plain_t.append(time.process_time() - start)
                plain_wall.append(time.perf_counter() - wall)
                plain_server_t.append(timer.seconds)
                plain_bytes.append(traffic_bytes(transport) - before)
                assert np.allclose(total, sum(parties[p].vector for p in names))
            else:
                label = f"bench/n{n}/d{dropout}/rep{rep}"
                dropped = set(np.random.default_rng(rep).choice(names, size=n_drop, replace=False)) if n_drop else set()
                for p in names:
                    parties[p].down_for = label if p in dropped else None
                start, wall = time.process_time(), time.perf_counter()
                result, server = secure_round(transport, names, params, dim, label, timer)
                secure_t.append(time.process_time() - start)
                secure_wall.append(time.perf_counter() - wall)
                secure_server_t.append(timer.seconds)
                secure_bytes.append(traffic_bytes(transport) - before)
                expected = sum(parties[p].vector for p in server.u3)
                errors.append(float(np.abs(result - expected).max()))
                assert sorted(dropped) == sorted(set(names) - set(server.u3))
    med = statistics.median
    return {
        "parties": n, "dropout": dropout, "dropped": n_drop, "dim": dim, "repeats": repeats,
        "neighbours": k if k is not None else n - 1, "complete_graph": k is None,
        "share_threshold": params.share_threshold(k if k is not None else n - 1), "min_live": params.min_live(n),
        "plain_total_s": med(plain_t), "secure_total_s": med(secure_t),
        "plain_server_s": med(plain_server_t), "secure_server_s": med(secure_server_t),
        "total_ratio": med(secure_t) / med(plain_t),
        "server_ratio": med(secure_server_t) / max(med(plain_server_t), 1e-9),
        "party_secure_s": (med(secure_t) - med(secure_server_t)) / n,
        "plain_bytes": med(plain_bytes), "secure_bytes": med(secure_bytes),
        "bytes_ratio": med(secure_bytes) / med(plain_bytes),
        "max_abs_error": max(errors),
        "secure_total_all_s": secure_t, "plain_total_all_s": plain_t,
        "secure_wall_all_s": secure_wall, "plain_wall_all_s": plain_wall,
        "wall_ratio": med(secure_wall) / med(plain_wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parties", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--dropouts", type=float, nargs="+", default=[0.0, 0.1, 0.3])
    parser.add_argument("--dim", type=int, default=10_000, help="length of each party's update vector")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--neighbours", choices=["auto", "all"], default="auto",
                        help="SecAgg+ graph: 'auto' sizes k for the dropout rate; 'all' is the complete graph")
    parser.add_argument("--also-complete", action="store_true",
                        help="for each setting where 'auto' picked a sparse graph, also measure the complete graph")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "secagg.json")
    args = parser.parse_args()
    logging.getLogger("sampan.core.party").setLevel(logging.ERROR)  # the simulated dropouts are expected

    rows = []
    print("CPU ms of the whole federation (parties + coordinator, one process) per aggregation; medians")
    header = (f"{'n':>4} {'drop':>5} {'k':>4} {'t':>3} | {'plain ms':>9} {'secure ms':>10} {'ratio':>7} | "
              f"{'srv plain':>9} {'srv sec':>9} {'ratio':>7} | {'party ms':>8} | {'bytes x':>7} | {'max err':>8}")
    print(header)
    print("-" * len(header))
    for n in args.parties:
        for dropout in args.dropouts:
            variants = [args.neighbours]
            if args.also_complete and args.neighbours == "auto" and choose_neighbours(n, THRESHOLD, max(dropout, 0.05)):
                variants.append("all")
            for variant in variants:
                r = measure(n, dropout, args.dim, args.repeats, variant)
                r["graph"] = variant
                rows.append(r)
                print(f"{n:>4} {dropout:>5.0%} {r['neighbours']:>4} {r['share_threshold']:>3} | "
                      f"{1e3 * r['plain_total_s']:>9.1f} {1e3 * r['secure_total_s']:>10.1f} "
                      f"{r['total_ratio']:>6.1f}x | "
                      f"{1e3 * r['plain_server_s']:>9.2f} {1e3 * r['secure_server_s']:>9.1f} "
                      f"{r['server_ratio']:>6.0f}x | "
                      f"{1e3 * r['party_secure_s']:>8.1f} | {r['bytes_ratio']:>6.2f}x | {r['max_abs_error']:>8.1e}",
                      flush=True)
    result = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "python": platform.python_version(),
              "load_average_at_end": list(os.getloadavg()), "clock": "process_time (CPU seconds)",
              "numpy": np.__version__, "machine": platform.processor() or platform.machine(),
              "threshold": THRESHOLD, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
