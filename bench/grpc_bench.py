"""Deployment benchmark: gRPC + mutual TLS against the in-process transport, bytes on the wire, 100 agents.

Parts (``--only rtt|overhead|scale``):

* **rtt** — the transport alone: the coordinator sends a wave of requests to 1 or 3 echo parties (own
  processes, mutual TLS on loopback) and waits for the replies; seconds per wave, small and 2 MB arrays.
* **overhead** — the same horizontal run (built-in SME consortium, 3 banks, same seed) once in one
  process and once as a coordinator plus three party-agent processes on loopback with mutual TLS.
  Per-round seconds come from the run store (the workflow times each round the same way in both), so
  the ratio is like for like. Every party dials through its own counting TCP forwarder, which gives the
  bytes that really cross the network (TLS records included) per party per round, against the size
  of the model.
* **scale** — N party agents (threads, spread over a few processes) against one coordinator process:
  rounds completed, seconds per round, the coordinator's peak memory and CPU time.

Writes bench/results/grpc.json. Usage::

    .venv/bin/python bench/grpc_bench.py                 # both parts
    .venv/bin/python bench/grpc_bench.py --only scale --agents 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


# --- process probes ------------------------------------------------------------------------------------
def _proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- shared helpers ------------------------------------------------------------------------------------
def _schema_dict(schema: Any) -> dict[str, Any]:
    return {"id": schema.id_column, **({"label": schema.label_column} if schema.label_column else {}),
            "features": [{"name": f.name, "kind": f.kind,
                          **({"categories": list(f.categories)} if f.categories else {})}
                         for f in schema.features]}


def _operator(files: Any) -> Any:
    import grpc

    op = files.operator
    return grpc.ssl_channel_credentials(op["ca"].read_bytes(), op["key"].read_bytes(), op["cert"].read_bytes())


def _submit_and_wait(files: Any, run: dict[str, Any], timeout: float = 1800) -> str:
    from sampan.transport.grpc_client import operator_call
    from sampan.wire import Message

    creds = _operator(files)
    reply = operator_call(files.address, creds, "Submit", Message("", 0, "ops", "coordinator", "deploy.submit",
                                                                 meta={"config": run}), target_name="localhost")
    if reply.is_error:
        raise RuntimeError(reply.meta)
    run_id = str(reply.meta["run_id"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = operator_call(files.address, creds, "Status", Message("", 0, "ops", "coordinator", "deploy.status",
                                                                        meta={"run_id": run_id}),
                               target_name="localhost")
        if status.meta["status"] in ("completed", "failed"):
            if status.meta["status"] == "failed":
                raise RuntimeError(f"run {run_id} failed: {status.meta['error']}")
            return run_id
        time.sleep(0.2)
    raise TimeoutError(run_id)


def _round_seconds(store_url: str, run_id: str) -> list[float]:
    from sampan.runtime.store import Store

    store = Store.open(store_url)
    try:
        return [r.seconds for r in store.rounds(run_id)]
    finally:
        store.close()


# --- part 1: overhead and bytes ----------------------------------------------------------------------------
MODELS = {
    "logistic": {"kind": "logistic"},
    "mlp-32": {"kind": "mlp", "hidden": [32]},
    "mlp-512x512": {"kind": "mlp", "hidden": [512, 512]},
}


def overhead(rounds: int, n_smes: int, reps: int, models: list[str],
             party_blas_threads: int | None) -> list[dict[str, Any]]:
    from sampan.config import parse_config
    from sampan.data import make_sme_consortium
    from sampan.deploy.local import Agent, Binding, TcpRecorder, free_port, wait_for_log, write_federation
    from sampan.models import model_from_config
    from sampan.runtime.runner import start_run
    from sampan.runtime.store import Store

    rows = []
    with TemporaryDirectory(prefix="sampan-grpc-bench-") as tmp:
        root = Path(tmp)
        consortium = make_sme_consortium(n_smes, seed=3)
        paths = consortium.write_csv(root / "data")
        banks = list(paths)
        schema = _schema_dict(consortium.schema_for(banks[0]))
        port = free_port()
        recorders = {b: TcpRecorder(port, record=False) for b in banks}
        files = write_federation(root / "fed", {b: {"loans": Binding(str(paths[b]), schema)} for b in banks},
                                 port=port, dial={b: f"127.0.0.1:{recorders[b].port}" for b in banks})
        coordinator = Agent("coordinator", files.coordinator_config)
        log = files.root / "coordinator" / "coordinator.log"
        wait_for_log(log, "listening on port", 60)
        env = {} if party_blas_threads is None else {
            "OPENBLAS_NUM_THREADS": str(party_blas_threads), "OMP_NUM_THREADS": str(party_blas_threads)}
        agents = [Agent("party", files.party_configs[b], env=env) for b in banks]
        try:
            if not wait_for_log(log, "connected from", 60, count=len(banks)):
                raise RuntimeError(log.read_text())
            store_url = f"sqlite:///{files.root / 'coordinator' / 'state' / 'coordinator.db'}"
            for model_name in models:
                model = MODELS[model_name]
                run = {"run": {"name": f"bench-{model_name}", "rounds": rounds, "seed": 7},
                       "model": model, "training": {"learning_rate": 0.1, "batch_size": 64, "local_steps": 20},
                       "deploy": {"dataset": "loans"}}
                n_features = sum(len(f.get("categories") or [None]) for f in schema["features"])  # one-hot width
                params = model_from_config({"kind": model["kind"], "n_features": n_features,
                                            **({"hidden": model["hidden"]} if "hidden" in model else {})}
                                           ).init_params(np.random.default_rng(0))
                local, remote, wire = [], [], []
                for rep in range(reps):
                    # in-process: the same run description with the data bound in one place
                    data = {k: v for k, v in run.items() if k != "deploy"}
                    data["run"] = {**run["run"], "report_dir": str(root / "reports")}
                    data["schema"] = schema
                    data["parties"] = [{"name": b, "path": str(paths[b])} for b in banks]
                    store = Store.open(f"sqlite:///{root / f'inprocess-{model_name}-{rep}.db'}")
                    finished = start_run(parse_config(data), store)
                    local.append(float(np.median([r.seconds for r in store.rounds(finished.outcome.run_id)])))
                    store.close()
                    # deployed
                    before = {b: recorders[b].total() for b in banks}
                    run_id = _submit_and_wait(files, run)
                    remote.append(float(np.median(_round_seconds(store_url, run_id))))
                    after = {b: recorders[b].total() for b in banks}
                    wire.append({b: ((after[b][0] - before[b][0]) / rounds, (after[b][1] - before[b][1]) / rounds)
                                 for b in banks})
                up = float(np.mean([np.mean([w[b][0] for b in banks]) for w in wire]))
                down = float(np.mean([np.mean([w[b][1] for b in banks]) for w in wire]))
                row = {"model": model_name, "parameters": int(params.size), "model_bytes": int(params.nbytes),
                       "inprocess_s_per_round": float(np.median(local)), "grpc_s_per_round": float(np.median(remote)),
                       "ratio": float(np.median(remote) / np.median(local)),
                       "overhead_s_per_round": float(np.median(remote) - np.median(local)),
                       "wire_bytes_per_party_per_round_up": up, "wire_bytes_per_party_per_round_down": down,
                       "wire_over_model": (up + down) / params.nbytes, "reps": reps, "rounds": rounds,
                       "party_blas_threads": party_blas_threads or os.environ.get("OPENBLAS_NUM_THREADS", "default")}
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            for agent in [coordinator, *agents]:
                agent.stop()
            for r in recorders.values():
                r.close()
    return rows


# --- part 0: transport round trips ---------------------------------------------------------------------------
def _serve_echo(root: str, name: str, address: str) -> None:
    """Worker process: one party that echoes every request (no work), for round-trip timing."""
    import grpc

    from sampan.transport.grpc_client import LinkSettings, PartyLink

    folder, ca = Path(root) / name, (Path(root) / "ca" / "ca.crt").read_bytes()
    creds = grpc.ssl_channel_credentials(ca, (folder / f"{name}.key").read_bytes(),
                                         (folder / f"{name}.crt").read_bytes())
    link = PartyLink(LinkSettings(name=name, address=address, target_name="localhost"),
                     lambda m: m.reply("echo", dict(m.arrays)), creds)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set(), link.close()), daemon=True).start()
    link.serve_forever(stop)


def round_trips(waves: int = 300) -> list[dict[str, Any]]:
    """Coordinator (this process) to 1 and 3 echo parties (own processes): seconds per request wave."""
    import grpc

    from sampan.deploy.certs import CertificateAuthenticator
    from sampan.deploy.local import free_port, write_federation
    from sampan.transport.grpc_hub import Hub, HubSettings
    from sampan.wire import Message

    rows = []
    with TemporaryDirectory(prefix="sampan-grpc-rtt-") as tmp:
        names = ["p0", "p1", "p2"]
        files = write_federation(Path(tmp), {n: {} for n in names}, port=free_port())
        members = {n: "party" for n in names}
        hub = Hub(HubSettings(), CertificateAuthenticator(files.ca_dir / "ca.crt", members=members,
                                                              issued=files.ca_dir / "issued.json"), members)
        c = files.root / "coordinator"
        creds = grpc.ssl_server_credentials([((c / "coordinator.key").read_bytes(),
                                              (c / "coordinator.crt").read_bytes())],
                                            root_certificates=(files.ca_dir / "ca.crt").read_bytes(),
                                            require_client_auth=True)
        hub.start(files.address, creds)
        workers = [subprocess.Popen([sys.executable, __file__, "--serve-echo", tmp, n, files.address],
                                    stdin=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT) for n in names]
        try:
            if hub.wait_for(names, 60):
                raise RuntimeError("echo parties did not connect")
            transport = hub.transport()
            for parties in (names[:1], names):
                for size in (16, 271_361):
                    payload = {"w": np.zeros(size)}
                    for _ in range(20):
                        list(transport.exchange(Message("r", 1, "coordinator", p, "k", payload) for p in parties))
                    started = time.perf_counter()
                    n = waves if size < 1000 else max(waves // 10, 10)
                    for _ in range(n):
                        list(transport.exchange(Message("r", 1, "coordinator", p, "k", payload) for p in parties))
                    row = {"parties": len(parties), "array_bytes": size * 8,
                           "s_per_wave": (time.perf_counter() - started) / n, "waves": n}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            for w in workers:
                w.stdin.close()  # type: ignore[union-attr]
                w.wait(15)
            hub.stop()
    return rows


# --- part 2: many agents -------------------------------------------------------------------------------------
def _serve_agents(config_paths: list[str]) -> None:
    """Worker process: one PartyAgent thread per config, until stdin closes."""
    import logging

    from sampan.deploy.config import load_party_config
    from sampan.deploy.party_agent import PartyAgent

    logging.basicConfig(level=logging.WARNING)
    stop = threading.Event()
    agents = [PartyAgent(load_party_config(p)) for p in config_paths]
    threads = [threading.Thread(target=a.serve, args=(stop,), daemon=True) for a in agents]
    for t in threads:
        t.start()
    sys.stdin.read()
    stop.set()
    for a in agents:
        if a.link is not None:
            a.link.close()


def scale(n_agents: int, processes: int, rounds: int, rows_per_party: int) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from sampan.deploy.local import Agent, Binding, free_port, wait_for_log, write_federation

    with TemporaryDirectory(prefix="sampan-grpc-scale-") as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        w = rng.normal(size=8)
        features = [f"x{j}" for j in range(8)]
        bindings = {}
        for i in range(n_agents):
            name = f"p{i:03d}"
            X = rng.normal(size=(rows_per_party, 8))
            y = (rng.random(rows_per_party) < 1 / (1 + np.exp(-(X @ w - 1)))).astype(np.int64)
            table = pa.table({"id": [f"{name}-{k}" for k in range(rows_per_party)], "y": y,
                              **{f: X[:, j] for j, f in enumerate(features)}})
            path = root / "data" / f"{name}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            pacsv.write_csv(table, path)
            bindings[name] = {"d": Binding(str(path), {"id": "id", "label": "y", "features": features})}
        started = time.perf_counter()
        files = write_federation(root / "fed", bindings, port=free_port(),
                                 party={"log_file": None, "backoff_max_s": 5.0})
        setup_s = time.perf_counter() - started
        coordinator = Agent("coordinator", files.coordinator_config)
        log = files.root / "coordinator" / "coordinator.log"
        if not wait_for_log(log, "listening on port", 60):
            raise RuntimeError("coordinator did not start")
        names = list(bindings)
        groups = [names[k::processes] for k in range(processes)]
        workers = [subprocess.Popen([sys.executable, __file__, "--serve-agents",
                                     *[str(files.party_configs[n]) for n in g]], stdin=subprocess.PIPE,
                                    cwd=ROOT) for g in groups]
        try:
            connect_started = time.perf_counter()
            if not wait_for_log(log, "connected from", 300, count=n_agents):
                raise RuntimeError(f"not all {n_agents} agents connected:\n{log.read_text()[-3000:]}")
            connect_s = time.perf_counter() - connect_started
            pid = coordinator.pid
            idle = _proc_status(pid)
            cpu0, t0 = _cpu_seconds(pid), time.perf_counter()
            peak = [idle["VmRSS"]]
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.wait(0.2):
                    peak.append(_proc_status(pid)["VmRSS"])

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            run = {"run": {"name": "bench-scale", "rounds": rounds, "seed": 1, "eval_every": rounds},
                   "model": {"kind": "logistic"}, "training": {"batch_size": 32}, "deploy": {"dataset": "d"}}
            run_id = _submit_and_wait(files, run)
            wall = time.perf_counter() - t0
            cpu = _cpu_seconds(pid) - cpu0
            sampling.set()
            sampler.join()
            seconds = _round_seconds(f"sqlite:///{files.root / 'coordinator' / 'state' / 'coordinator.db'}", run_id)
            status = _proc_status(pid)
            result = {"agents": n_agents, "agent_processes": processes, "rows_per_party": rows_per_party,
                      "rounds_completed": len(seconds), "rounds": rounds, "s_per_round_mean": float(np.mean(seconds)),
                      "s_per_round_max": float(np.max(seconds)), "run_wall_s": wall,
                      "coordinator_cpu_s": cpu, "coordinator_cpu_percent": 100 * cpu / wall,
                      "coordinator_rss_idle_mb": idle["VmRSS"] / 2**20,
                      "coordinator_rss_peak_mb": max(max(peak), status["VmHWM"]) / 2**20,
                      "certificates_and_configs_s": setup_s, "all_connected_s": connect_s}
            print(json.dumps(result), flush=True)
            return result
        finally:
            for p in workers:
                try:
                    p.stdin.close()  # type: ignore[union-attr]
                    p.wait(15)
                except Exception:  # noqa: BLE001
                    p.kill()
            coordinator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["rtt", "overhead", "scale"])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--n-smes", type=int, default=12000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--agent-processes", type=int, default=4)
    parser.add_argument("--scale-rounds", type=int, default=10)
    parser.add_argument("--rows-per-party", type=int, default=300)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--party-blas-threads", type=int, default=None,
                        help="OPENBLAS_NUM_THREADS for each party agent (default: the library's own choice)")
    parser.add_argument("--serve-agents", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--serve-echo", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_agents:
        _serve_agents(args.serve_agents)
        return
    if args.serve_echo:
        _serve_echo(*args.serve_echo)
        return
    import grpc

    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                           "python": platform.python_version(), "grpcio": grpc.__version__,
                           "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS", "library default")}
    if args.only in (None, "rtt"):
        out["round_trips"] = round_trips()
    if args.only in (None, "overhead"):
        out["overhead"] = overhead(args.rounds, args.n_smes, args.reps, args.models, args.party_blas_threads)
    if args.only in (None, "scale"):
        out["scale"] = scale(args.agents, args.agent_processes, args.scale_rounds, args.rows_per_party)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "grpc.json" if args.only is None else f"grpc-{args.only}.json"
    if args.party_blas_threads is not None:
        name = name.replace(".json", f"-blas{args.party_blas_threads}.json")
    (RESULTS / name).write_text(json.dumps(out, indent=1))
    print(f"wrote {RESULTS / name}")


if __name__ == "__main__":
    main()
