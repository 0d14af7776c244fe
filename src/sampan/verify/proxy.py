"""RecordingProxy: a TCP relay the verifier puts between its own party and the platform, to measure the wire.

Bytes and timing in the performance tests come from here, never from the platform's logs: the proxy counts
every byte each way per connection, with first/last byte times and a time series of (t, direction, nbytes), so
a test can cut the traffic by round. The series is bounded whatever the platform does (it controls how its bytes
are segmented): reads are merged into buckets of ``series_resolution`` seconds per direction (10 ms at first,
doubled whenever a connection reaches MAX_SERIES entries), each bucket stamped with its first read's time, so
`bytes_between` is exact to within one bucket. It sees TLS records only as bytes (it terminates nothing), which
is the point: with ``capture=True`` it keeps the first bytes of each direction (bounded, appended in place) so a
test can look for plaintext on the wire. ``allowed_hosts`` limits where it may relay to (the target comes from the
platform: without a list, the verifier connects wherever it is told, internal addresses included). Any local
process can connect to the listening port, and its bytes are counted too (the proxy cannot tell who connects).
"up" is the party to the platform, "down" the platform to the party. Times are seconds on `time.monotonic()`
since the proxy started (``started_at`` is the wall-clock time of that instant).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["up", "down"]
DEFAULT_CAPTURE_BYTES = 1 << 20
SERIES_RESOLUTION = 0.01
MAX_SERIES = 50_000
_CHUNK = 1 << 16
_CLOSE_WAIT = 2.0


@dataclass
class ConnectionRecord:
    """What one connection carried (a copy when it comes from `snapshot()`)."""

    id: int
    opened: float
    closed: float | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    first_up: float | None = None
    last_up: float | None = None
    first_down: float | None = None
    last_down: float | None = None
    series: list[tuple[float, Direction, int]] = field(default_factory=list)
    captured_up: bytes = b""
    captured_down: bytes = b""
    truncated: bool = False
    error: str | None = None
    series_resolution: float = SERIES_RESOLUTION

    def copy(self) -> ConnectionRecord:
        return ConnectionRecord(self.id, self.opened, self.closed, self.bytes_up, self.bytes_down, self.first_up,
                                self.last_up, self.first_down, self.last_down, list(self.series), self.captured_up,
                                self.captured_down, self.truncated, self.error, self.series_resolution)


@dataclass(frozen=True)
class ProxySnapshot:
    """All connections so far (copies) and their totals."""

    connections: tuple[ConnectionRecord, ...]
    started_at: float

    @property
    def bytes_up(self) -> int:
        return sum(c.bytes_up for c in self.connections)

    @property
    def bytes_down(self) -> int:
        return sum(c.bytes_down for c in self.connections)

    def bytes_between(self, start: float, end: float) -> dict[Direction, int]:
        """Bytes each way read in [start, end) (proxy seconds): e.g. one round's traffic (a bucket counts where
        its first read fell, so the cut is exact to within ``series_resolution``)."""
        totals: dict[Direction, int] = {"up": 0, "down": 0}
        for conn in self.connections:
            for t, direction, n in conn.series:
                if start <= t < end:
                    totals[direction] += n
        return totals

    def captured(self, direction: Direction) -> bytes:
        """The captured bytes of every connection in ``direction``, concatenated (empty unless capture=True)."""
        return b"".join(c.captured_up if direction == "up" else c.captured_down for c in self.connections)


class RecordingProxy:
    """Listens on 127.0.0.1:<free port> (``address``) and relays each connection to ``target`` ("host:port");
    ``allowed_hosts``: the only target hosts accepted (e.g. the platform's own host), None for any."""

    def __init__(self, target: str, *, capture: bool = False, capture_bytes: int = DEFAULT_CAPTURE_BYTES,
                 listen_host: str = "127.0.0.1", allowed_hosts: Collection[str] | None = None) -> None:
        host, sep, port = target.rpartition(":")
        if not sep or not port.isdigit() or not host or not 1 <= int(port) <= 65535:
            raise ValueError(f"RecordingProxy: target {target!r} is not host:port (port 1..65535)")
        self.target_host, self.target_port = host.strip("[]"), int(port)
        if allowed_hosts is not None and self.target_host.lower() not in {h.strip("[]").lower() for h in allowed_hosts}:
            raise ValueError(f"RecordingProxy: target host {self.target_host!r} is not one the verifier may connect "
                             f"to ({', '.join(sorted(allowed_hosts)) or 'none'})")
        self.capture, self.capture_bytes, self.listen_host = capture, capture_bytes, listen_host
        self._lock = threading.Lock()
        self._connections: list[ConnectionRecord] = []
        self._t0 = time.monotonic()
        self.started_at = time.time()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._held: dict[tuple[int, Direction], bytearray] = {}
        self._last: dict[tuple[int, Direction], int] = {}  # index of each direction's open bucket in its series
        self._stopping = False
        self.port = 0

    @property
    def address(self) -> str:
        """Where the party connects instead of the target ("127.0.0.1:port")."""
        return f"{self.listen_host}:{self.port}"

    def now(self) -> float:
        """The proxy's clock (seconds since start), to mark round boundaries for `bytes_between`."""
        return time.monotonic() - self._t0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> RecordingProxy:
        if self._thread is not None:
            raise RuntimeError("RecordingProxy: already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(asyncio.start_server(self._handle, self.listen_host, 0))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="recording-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise RuntimeError(f"RecordingProxy: cannot listen on {self.listen_host}: {failure[0]}")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return

        async def shutdown() -> None:
            self._stopping = True
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):  # drop unsent bytes: a platform that stops reading must not hold us
                w.transport.abort()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._server is not None:
                await self._server.wait_closed()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    def __enter__(self) -> RecordingProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def snapshot(self) -> ProxySnapshot:
        """A consistent copy of every connection's record so far (safe from any thread)."""
        with self._lock:
            copies = []
            for c in self._connections:
                copy = c.copy()
                copy.captured_up = bytes(self._held.get((c.id, "up"), b""))
                copy.captured_down = bytes(self._held.get((c.id, "down"), b""))
                copies.append(copy)
            return ProxySnapshot(tuple(copies), self.started_at)

    # ------------------------------------------------------------------ relaying
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        with self._lock:
            record = ConnectionRecord(id=len(self._connections) + 1, opened=self.now())
            self._connections.append(record)
        upstream: asyncio.StreamWriter | None = None
        self._writers.add(writer)
        try:
            target_reader, upstream = await asyncio.open_connection(self.target_host, self.target_port)
            self._writers.add(upstream)
            await asyncio.gather(self._pump(reader, upstream, record, "up"),
                                 self._pump(target_reader, writer, record, "down"))
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # recorded, never a traceback: a failed connection must not read as a clean one
            with self._lock:
                record.error = f"{type(exc).__name__}: {exc}"
        finally:
            for w in (writer, upstream):
                if w is None:
                    continue
                self._writers.discard(w)
                if self._stopping:
                    w.transport.abort()
                else:
                    w.close()
                try:
                    await asyncio.wait_for(w.wait_closed(), _CLOSE_WAIT)
                except (Exception, asyncio.CancelledError):
                    w.transport.abort()  # the peer would not take the rest: drop it
            with self._lock:
                record.closed = self.now()
            if task is not None:
                self._tasks.discard(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: ConnectionRecord,
                    direction: Direction) -> None:
        try:
            while True:
                chunk = await source.read(_CHUNK)
                if not chunk:
                    break
                self._count(record, direction, chunk)
                sink.write(chunk)
                await sink.drain()
        except (ConnectionResetError, BrokenPipeError) as exc:
            with self._lock:
                record.error = record.error or f"{direction}: {type(exc).__name__}"
        finally:
            if sink.can_write_eof() and not sink.is_closing():
                with contextlib.suppress(OSError):
                    sink.write_eof()  # half-close: the other direction may still be talking

    def _count(self, record: ConnectionRecord, direction: Direction, chunk: bytes) -> None:
        t, n = self.now(), len(chunk)
        with self._lock:
            self._add_to_series(record, t, direction, n)
            if direction == "up":
                record.bytes_up += n
                record.first_up = t if record.first_up is None else record.first_up
                record.last_up = t
            else:
                record.bytes_down += n
                record.first_down = t if record.first_down is None else record.first_down
                record.last_down = t
            if self.capture:
                held = self._held.setdefault((record.id, direction), bytearray())
                room = self.capture_bytes - len(held)
                if room < n:
                    record.truncated = True
                if room > 0:
                    held += chunk[:room]  # in place: no copy of what is already held

    def _add_to_series(self, record: ConnectionRecord, t: float, direction: Direction, n: int) -> None:
        """Add a read to its direction's current bucket, or open a new one (coarsening past MAX_SERIES)."""
        key = (record.id, direction)
        last = self._last.get(key)
        width = record.series_resolution
        if last is not None:
            t0, _, total = record.series[last]
            if int(t0 // width) == int(t // width):
                record.series[last] = (t0, direction, total + n)
                return
        if len(record.series) >= MAX_SERIES:
            self._coarsen(record)
        record.series.append((t, direction, n))
        self._last[key] = len(record.series) - 1

    def _coarsen(self, record: ConnectionRecord) -> None:
        """Double the bucket width until the series fits in half of MAX_SERIES (amortised linear)."""
        while len(record.series) > MAX_SERIES // 2:
            record.series_resolution *= 2
            width = record.series_resolution
            merged: dict[tuple[int, Direction], tuple[float, Direction, int]] = {}
            for t, direction, n in record.series:
                key = (int(t // width), direction)
                first = merged.get(key)
                merged[key] = (t, direction, n) if first is None else (first[0], direction, first[2] + n)
            record.series = sorted(merged.values(), key=lambda e: e[0])
        for direction in ("up", "down"):
            indices = [i for i, e in enumerate(record.series) if e[1] == direction]
            if indices:
                self._last[(record.id, direction)] = indices[-1]
            else:
                self._last.pop((record.id, direction), None)


__all__ = ["RecordingProxy", "ProxySnapshot", "ConnectionRecord", "DEFAULT_CAPTURE_BYTES"]
