"""Where the RR22 backend's time goes: a phase timeline and CPU seconds per process, beside spu's own RR22.

Why: on the shared, loaded 2-core VM wall time moves with other sessions' load; CPU seconds per process
(coordinator, each party, each spu worker; `/proc/<pid>/stat` utime + stime) and the coordinator's timeline of
requests move far less, and show what Sampan's path costs beyond spu's own.

Usage: ``.venv/bin/python bench/psi_rr22_profile.py N [--native] [--json OUT]``. Prints one JSON object:

* ``phases``: seconds from the start of `run_rr22` to the end of each request kind (offer, accept, start, the
  first and last pump that carried bytes, the pumps' end, finish, close), and the pump count/bytes;
* ``cpu``: CPU seconds per process over the run: the coordinator (this process, less the sampler thread), each
  party process, each spu worker (sampled every 0.1 s, the last sample before it exits);
* with ``--native``: spu's own RR22 (`psi_rr22_contenders.spu_native`) run right after, with its workers'
  CPU seconds (wait4), so both are taken under the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import psi_rr22_contenders as contenders  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")


def _tasks(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def _cpu(path: str) -> float | None:
    """utime + stime seconds from a /proc stat file (a process's or one thread's), None once it is gone."""
    try:
        raw = Path(path).read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            out += [int(x) for x in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    except OSError:
        pass
    return out


def _same_priority(pid: int) -> None:
    """Give a spu worker (its own session, so its own autogroup) this process's autogroup nice value.

    Why: a benchmark started as ``setsid bash -c 'echo -10 > /proc/$$/autogroup; exec ...'`` lifts its own
    session over other sessions' load, but each party starts its spu worker in a new session, which falls back
    to nice 0; spu's own RR22 (`spu_native`) runs its workers inside the benchmark's session. Without this, a
    loaded machine slows the backend's spu workers and not the native ones."""
    try:
        nice = Path("/proc/self/autogroup").read_text().split("nice")[1].split()[0]
        Path(f"/proc/{pid}/autogroup").write_text(nice)
    except (OSError, IndexError):
        pass


class Sampler:
    """CPU seconds of the party processes and their spu workers, sampled every `every` seconds."""

    def __init__(self, parties: dict[str, int], every: float = 0.1) -> None:
        self.parties, self.every = parties, every
        self.last: dict[int, tuple[str, float]] = {}  # pid or tid -> (role, cpu seconds)
        self.base: dict[int, float] = {}
        self.own = 0.0
        self.history: list[tuple[float, dict[str, float]]] = []  # (seconds, CPU so far per role) every sample
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        """Each party's main thread (the handlers), its other threads (the tunnel's), and its spu worker."""
        for name, pid in self.parties.items():
            seen = [(name, pid, f"/proc/{pid}/task/{pid}/stat")]
            seen += [(f"{name} other threads", t, f"/proc/{pid}/task/{t}/stat") for t in _tasks(pid) if t != pid]
            seen += [(f"{name} spu worker", c, f"/proc/{c}/stat") for c in _children(pid)]
            for role, key, path in seen:
                got = _cpu(path)
                if got is not None:
                    if key not in self.last and role.endswith("worker"):
                        _same_priority(key)
                    self.last[key] = (role, got)
                    self.base.setdefault(key, 0.0 if role.endswith("worker") else got)

    def snapshot(self) -> dict[str, float]:
        """CPU seconds so far per role (a phase boundary)."""
        self.sample()
        return self.totals()

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, (role, seconds) in self.last.items():
            out[role] = round(out.get(role, 0.0) + seconds - self.base[pid], 2)
        return out

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()
            self.history.append((round(time.perf_counter() - self.t0, 2), self.totals()))
        self.own = time.thread_time()

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.sample()
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return self.snapshot()


def backend(n: int, trace_out: Path | None = None) -> dict[str, Any]:
    """The RR22 backend as `psi_rr22_contenders.rr22_backend` runs it, with the timeline and CPU split."""
    from sampan.crypto.channel import PartyKeys, SealedChannels
    from sampan.transport.multiprocess import MultiprocessTransport
    from sampan.vertical.psi_rr22 import run_rr22
    from sampan.wire import Message

    names = ("bank", "payments")
    keys = {name: PartyKeys.generate() for name in names}
    public = {name: k.public_bytes for name, k in keys.items()}
    apps = {}
    for name in names:
        app, party = contenders._party_app(name)
        party.channels = SealedChannels(name, keys[name], public, "bench",
                                        roles={"bank": "label_holder", "payments": "partner"})
        apps[name] = app
    transport = MultiprocessTransport(apps, pinned=True)
    log: list[tuple[float, str, int, int, bool]] = []
    trace: list[tuple[float, float, str, int, int]] = []  # each pump: start, end, party, bytes in, bytes out
    plain = transport.exchange
    at_phase: list[tuple[str, float, dict[str, float]]] = []  # (kind starting, seconds, CPU so far)

    def traced(messages: Iterable[Message]) -> Iterator[Message]:
        batch = list(messages)
        if not at_phase or at_phase[-1][0] != batch[0].kind:
            cpu = sampler.snapshot()
            use = resource.getrusage(resource.RUSAGE_SELF)
            cpu["coordinator"] = round(use.ru_utime + use.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2)
            at_phase.append((batch[0].kind, round(time.perf_counter() - started, 3), cpu))
        t0 = time.perf_counter()
        replies = list(plain(batch))
        sent = sum(int(m.arrays["envelope"].size) for m in batch if "envelope" in m.arrays)
        got = sum(int(r.arrays["envelope"].size) for r in replies if "envelope" in r.arrays)
        log.append((time.perf_counter(), batch[0].kind, sent, got, any(r.meta.get("done") for r in replies)))
        if batch[0].kind == "psi.rr22.pump" and trace_out is not None:
            trace.append((round(t0 - started, 4), round(log[-1][0] - started, 4), batch[0].recipient, sent, got))
        return iter(replies)

    try:
        offsets = {"bank": 0, "payments": n - int(n * 0.5)}
        list(transport.exchange(Message("bench", 0, "coordinator", p, "bench.load",
                                         meta={"n": n, "offset": offsets[p]}) for p in names))
        sampler = Sampler({name: int(proc.pid or 0) for name, proc in zip(names, transport._procs, strict=True)})
        transport.exchange = traced  # type: ignore[method-assign]
        sampler.start()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        outcome = run_rr22(transport, "bench", "bank", "payments", "both")
        seconds = time.perf_counter() - started
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = sampler.stop()
    finally:
        transport.exchange = plain  # type: ignore[method-assign]
        transport.close()
    if trace_out is not None:
        trace_out.write_text(json.dumps({"pumps": trace, "cpu_every_0.1s": sampler.history,
                                         "run_started": round(started - sampler.t0, 3)}))
    cpu["coordinator"] = round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime - sampler.own, 2)
    phases: dict[str, float] = {}
    pumps = [row for row in log if row[1] == "psi.rr22.pump"]
    carrying = [row for row in pumps if row[2] or row[3]]
    for at, kind, *_ in log:
        phases[kind.removeprefix("psi.rr22.")] = round(at - started, 3)  # the last request of each kind
    if carrying:
        phases["first pump with bytes"] = round(carrying[0][0] - started, 3)
        phases["last pump with bytes"] = round(carrying[-1][0] - started, 3)
    phases["first pump"] = round(pumps[0][0] - started, 3) if pumps else 0.0
    return {"n": n, "seconds": round(seconds, 2), "intersection": outcome.cardinality, "phases": phases,
            "pumps": len(pumps), "pumps_with_bytes": len(carrying),
            "relayed_mb": round(sum(r[2] + r[3] for r in pumps) / 2 / 1e6, 1),
            "spu_idle_spells": idle_spells(sampler.history, ["bank spu worker", "payments spu worker"]),
            "cpu_at_phase_start": at_phase, "cpu": cpu, "cpu_total": round(sum(cpu.values()), 2),
            "load": os.getloadavg()[0]}


def idle_spells(history: list[tuple[float, dict[str, float]]], roles: list[str],
                least: float = 1.0) -> list[list[float]]:
    """[start, seconds] of each spell of at least `least` seconds in which no listed process used CPU (< 2%)."""
    spells: list[list[float]] = []
    start = None
    for (t0, c0), (t1, c1) in zip(history, history[1:], strict=False):
        busy = sum(c1.get(r, 0.0) - c0.get(r, 0.0) for r in roles) > 0.02 * (t1 - t0) * len(roles)
        if not busy and start is None:
            start = t0
        if busy and start is not None:
            if t0 - start >= least:
                spells.append([round(start, 2), round(t0 - start, 2)])
            start = None
    return spells


def native(n: int) -> dict[str, Any]:
    """spu's own RR22 (the contenders' script), with its workers' CPU seconds and their idle spells."""
    me = os.getpid()
    history: list[tuple[float, dict[str, float]]] = []
    stop = threading.Event()
    t0 = time.perf_counter()

    def watch() -> None:
        seen: dict[str, float] = {}
        while not stop.wait(0.1):
            for rank, pid in enumerate(sorted(_children(me))):
                got = _cpu(f"/proc/{pid}/stat")
                if got is not None:
                    seen[f"rank {rank}"] = got
            history.append((round(time.perf_counter() - t0, 2), dict(seen)))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = contenders.spu_native(n, 0.5)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stop.set()
    watcher.join()
    result["cpu_total"] = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2)
    result["idle_spells"] = idle_spells(history, ["rank 0", "rank 1"])
    result["load"] = os.getloadavg()[0]
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int)
    parser.add_argument("--native", action="store_true", help="also run spu's own RR22 right after")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--trace", type=Path, help="write every pump (start, end, party, bytes in, out) here")
    args = parser.parse_args()
    result: dict[str, Any] = {"backend": backend(args.n, args.trace)}
    print(json.dumps(result["backend"]), flush=True)
    if args.native:
        result["native"] = native(args.n)
        print(json.dumps(result["native"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
