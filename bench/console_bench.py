"""Control-plane latency on the embedded console stack: the live run view and the approval round trip.

Run from the repository root (needs the console extra, e.g. the `make test` venv):
    .venv/bin/python bench/console_bench.py [--requests 200] [--jobs 20]

Starts `sampan console`'s stack for real in a temporary folder (coordinator over gRPC + mutual TLS, three party
agent processes, the control plane on uvicorn over loopback HTTP), sets up a consortium through the REST API
and runs one horizontal DP job (3 banks, 5 rounds) so that there is a finished run to view. Then it times, each
from an httpx client with a session cookie (as the console's pages call them):

- GET /api/v1/health                       (baseline: the HTTP stack and authentication-free routing)
- GET /api/v1/runs/{id}                    (the live run page's poll: store reads, ledger summary, events)
- POST /api/v1/jobs/{id}/approvals/{party} (approval round trip: control plane -> coordinator -> the party's
                                            agent over its stream: recompute the spec hash, check, reserve in
                                            the budget book, sign, store, audit -> verified by the coordinator
                                            -> recorded; each of `--jobs` exact jobs approved by all 3 banks)

Reports median and p95 per call. Results: bench/results/console.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from sampan.web.embedded import EmbeddedConsole

ROOT = Path(__file__).resolve().parent.parent
BANKS = ["bank_harbour", "bank_kowloon", "bank_lionrock"]
API = "/api/v1"


def _config(name: str, epsilon: float | None) -> dict[str, Any]:
    data: dict[str, Any] = {"run": {"name": name, "rounds": 5, "seed": 5}, "model": {"kind": "logistic"},
                            "training": {"learning_rate": 0.1, "batch_size": 64}, "data": {"standardize": False},
                            "deploy": {"dataset": "loans", "parties": BANKS}}
    if epsilon is not None:
        data["privacy"] = {"epsilon": epsilon, "dp2": {"max_grad_norm": 1.0}}
    return data


def _client(url: str, username: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=url.rstrip("/"), timeout=120)
    reply = client.post(f"{API}/auth/login", json={"username": username, "password": password})
    reply.raise_for_status()
    client.headers["X-CSRF-Token"] = reply.json()["csrf_token"]
    return client


def _first_client(url: str, username: str, one_time_password: str) -> httpx.Client:
    """Sign in with a one-time password and choose a password at once (until then every other call is a 403)."""
    client = _client(url, username, one_time_password)
    _ok(client.post(f"{API}/me/password", json={"old_password": one_time_password,
                                                "new_password": f"{username} bench password"}))
    return client


def _ok(reply: httpx.Response) -> Any:
    if reply.status_code >= 300:
        raise RuntimeError(f"{reply.request.method} {reply.request.url}: {reply.status_code} {reply.text}")
    return reply.json() if reply.content else None


def _time(call: Callable[[], Any], n: int, warmup: int = 5) -> dict[str, float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {"n": n, "median_ms": round(statistics.median(samples), 2),
            "p95_ms": round(samples[min(len(samples) - 1, int(0.95 * len(samples)))], 2),
            "max_ms": round(samples[-1], 2)}


def run(requests: int, jobs: int, folder: Path) -> dict[str, Any]:
    console = EmbeddedConsole(folder, port=0, n_smes=6000, budget_epsilon=50.0)
    started = console.start()
    try:
        missing = console.wait_connected(120)
        if missing:
            raise RuntimeError(f"agents not connected: {missing}")
        admin = _first_client(started.url, "admin", str(started.admin_password))
        cid = _ok(admin.post(f"{API}/consortia", json={"name": "bench"}))["id"]
        ops = {}
        for bank in BANKS:
            invite = _ok(admin.post(f"{API}/consortia/{cid}/members", json={"organisation": bank}))
            ops[bank] = _first_client(started.url, invite["operator_username"], invite["one_time_password"])
            _ok(ops[bank].post(f"{API}/consortia/{cid}/datasets", json={"party": bank, "name": "loans"}))

        def new_job(name: str, epsilon: float | None) -> int:
            body = {"name": name, "config": _config(name, epsilon), "datasets": dict.fromkeys(BANKS, "loans")}
            return int(_ok(admin.post(f"{API}/consortia/{cid}/jobs", json=body))["id"])

        first = new_job("bench-run", 3.0)
        for bank in BANKS:
            _ok(ops[bank].post(f"{API}/jobs/{first}/approvals/{bank}", json={"approve": True}))
        run_id = _ok(admin.post(f"{API}/jobs/{first}/start"))["run_id"]
        deadline = time.monotonic() + 300
        while True:
            view = _ok(admin.get(f"{API}/runs/{run_id}"))
            if view["status"] in ("completed", "failed", "cancelled") and view.get("report_path"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} did not finish: {view['status']}")
            time.sleep(0.5)
        if view["status"] != "completed":
            raise RuntimeError(f"run {run_id} {view['status']}: {view.get('error')}")

        health = _time(lambda: _ok(admin.get(f"{API}/health")), requests)
        run_view = _time(lambda: _ok(admin.get(f"{API}/runs/{run_id}")), requests)
        job_ids = [new_job(f"bench-approve-{i}", None) for i in range(jobs + 1)]
        pending = [(j, b) for j in job_ids for b in BANKS]

        def approve() -> None:
            job_id, bank = pending.pop(0)
            _ok(ops[bank].post(f"{API}/jobs/{job_id}/approvals/{bank}", json={"approve": True}))

        approval = _time(approve, jobs * len(BANKS), warmup=len(BANKS))
        return {"health": health, "run_view": run_view, "approval_round_trip": approval,
                "run": {"rounds": view["total_rounds"], "events": view.get("events_total"),
                        "parties": len(view["epsilon"])}}
    finally:
        console.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="timed GETs per endpoint")
    parser.add_argument("--jobs", type=int, default=20, help="jobs approved by all three banks (timed)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "console.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sampan-console-bench-") as tmp:
        figures = run(args.requests, args.jobs, Path(tmp) / "console")
    result = {"bench": "console", "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
              "python": platform.python_version(), "requests": args.requests, "jobs": args.jobs, **figures}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
