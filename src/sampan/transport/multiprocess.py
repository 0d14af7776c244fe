"""Parallel simulation: parties hosted in forked worker processes, exchanging wire bytes over pipes.

Use it to simulate a consortium on all cores. Workers are forked after the parties' data is loaded,
so every worker can serve every party (copy-on-write); each request goes to the next idle worker,
which balances unequal parties. Handlers must therefore keep no state between requests that matters
to results (the horizontal handlers keep only caches). Only `sampan.wire` bytes cross the process
boundary (no pickle: pipes carry `send_bytes`/`recv_bytes` frames). Replies are yielded in request
order, so aggregation sums in the same order as the sequential transport: results are bit-identical.

It pays off when a party's work per request outweighs shipping the model through a pipe (a few
large parties); for thousands of tiny parties the sequential in-process transport is faster.
Linux/macOS only (it forks).

``pinned=True`` gives every party its own worker instead, for protocols whose parties keep state
between requests (vertical FL: keys, shares, the inbox of sealed envelopes). A party's requests then
run in its own process, in order, concurrently with the other parties' — like separate organisations.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from multiprocessing.connection import Connection, wait

from sampan.core.transport import Endpoint, PartyError, TrafficLog, Transport, raise_for_error, take_requests
from sampan.wire import Message, WireError, decode, encode

_STOP = b""


def _serve(conn: Connection, apps: Mapping[str, Endpoint]) -> None:
    """Worker loop: one request in, one reply out, until the coordinator sends the stop frame."""
    try:
        while True:
            try:
                frame = conn.recv_bytes()
            except EOFError:
                break
            if frame == _STOP:
                break
            try:
                request = decode(frame)
                app = apps.get(request.recipient)
                reply = app.handle(request) if app is not None else request.error_reply(
                    KeyError(f"no party named {request.recipient!r} in this worker"))
            except WireError as exc:
                reply = Message("", 0, "worker", "coordinator", "error",
                                meta={"error_type": "WireError", "error": str(exc), "request_kind": "?"})
            conn.send_bytes(encode(reply))
    finally:
        conn.close()
        os._exit(0)  # never run the parent's atexit hooks or finalizers in a forked child


class MultiprocessTransport(Transport):
    """Drop-in replacement for InProcessTransport that runs parties on `workers` processes."""

    def __init__(self, apps: Mapping[str, Endpoint], *, workers: int | None = None, pinned: bool = False) -> None:
        names = list(apps)
        if not names:
            raise ValueError("a federation needs at least one party")
        self._workers = len(names) if pinned else max(1, min(workers or os.cpu_count() or 1, len(names)))
        self._pinned = {name: i for i, name in enumerate(names)} if pinned else None
        self._names = names
        self._known = frozenset(names)
        self.traffic = TrafficLog()
        ctx = multiprocessing.get_context("fork")
        self._conns: list[Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        for w in range(self._workers):
            parent_end, child_end = ctx.Pipe()
            served = {names[w]: apps[names[w]]} if pinned else dict(apps)
            proc = ctx.Process(target=_serve, args=(child_end, served), daemon=True,
                               name=f"sampan-party-worker-{w}")
            proc.start()
            child_end.close()
            self._conns.append(parent_end)
            self._procs.append(proc)

    @property
    def parties(self) -> list[str]:
        return list(self._names)

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        source = iter(messages)
        window = 2 * self._workers  # bounded read-ahead: memory stays O(workers), not O(parties)
        waiting: deque[tuple[int, Message]] = deque()
        busy: dict[int, tuple[int, Message]] = {}  # worker -> (index, request) in flight
        done: dict[int, Message] = {}
        try:
            yield from self._pump(source, window, waiting, busy, done)
        finally:  # caller stopped early (an error reply, a break): drain so the next exchange starts clean
            for worker in list(busy):
                try:
                    self._conns[worker].recv_bytes()
                except (EOFError, OSError):
                    pass
            busy.clear()

    def _pump(self, source: Iterator[Message], window: int, waiting: deque[tuple[int, Message]],
              busy: dict[int, tuple[int, Message]], done: dict[int, Message]) -> Iterator[Message]:
        next_index, read, exhausted = 0, 0, False
        while True:
            if not exhausted:
                batch, exhausted = take_requests(source, self._known, window - len(waiting) - len(busy) - len(done))
                for message in batch:
                    waiting.append((read, message))
                    read += 1
            for worker, item in self._assign(waiting, busy):
                frame = encode(item[1])
                self.traffic.record(item[1].recipient, "received", item[1].kind, len(frame))
                self._conns[worker].send_bytes(frame)
                busy[worker] = item
            if next_index in done:
                yield raise_for_error(done.pop(next_index))
                next_index += 1
                continue
            if not busy:
                if exhausted and not waiting:
                    return
                continue
            for ready in wait([self._conns[w] for w in busy]):
                worker = next(w for w in busy if self._conns[w] is ready)
                index, request = busy.pop(worker)
                try:
                    frame = self._conns[worker].recv_bytes()
                except EOFError:
                    raise PartyError(request.recipient, request.kind, "WorkerDied",
                                     f"worker process {worker} exited while handling the request") from None
                reply = decode(frame)
                self.traffic.record(request.recipient, "sent", reply.kind, len(frame))
                done[index] = reply

    def _assign(self, waiting: deque[tuple[int, Message]],
                busy: dict[int, tuple[int, Message]]) -> Iterator[tuple[int, tuple[int, Message]]]:
        """Pair waiting requests with idle workers: any idle worker, or (pinned) the party's own."""
        if self._pinned is None:
            idle = [w for w in range(self._workers) if w not in busy]
            while waiting and idle:
                yield idle.pop(0), waiting.popleft()
            return
        taken: set[int] = set()
        for item in list(waiting):
            worker = self._pinned[item[1].recipient]
            if worker in busy or worker in taken:
                taken.add(worker)  # keep each party's requests in order
                continue
            waiting.remove(item)
            taken.add(worker)
            yield worker, item

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send_bytes(_STOP)
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []

    def __del__(self) -> None:
        if getattr(self, "_procs", None):
            self.close()
