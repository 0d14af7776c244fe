"""Security events of a deployment (connections, refusals, revocations) in the signed, hash-chained audit log.

Before this, refused peers went only to a plain-text log. Now every connection, every refusal (with the
peer's address and the reason) and every revocation is an entry of the store's audit chain
``security`` (`sampan audit-log show security`, checked by `sampan audit-log verify` like any run's
chain). A peer that keeps knocking must not be able to flood the log: each unauthenticated peer
(by host, not port) and each member (by name: the hub keys member events `member:<name>`, so a
stranger flooding from a member's host cannot crowd out that member's entries) gets at most
`per_peer` entries per `window_s`; the first entry it loses in a window is itself
recorded once (`rate_limited`), and the next entry after the window says how many were dropped.

Entries are written by one background thread, in order, so a burst never blocks the gRPC loop. The
queue is bounded (`max_queue`): when many peers knock at once faster than the store writes, further
entries are dropped and counted, and the writer records one `queue_overflow` entry with the count once
it has drained the queue, so the log says that (and how much) it missed.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

__all__ = ["SecurityAudit", "SECURITY_CHAIN", "peer_host"]

log = logging.getLogger("sampan.deploy.security")
SECURITY_CHAIN = "security"


class _Sink(Protocol):
    def log_event(self, run_id: str, kind: str, detail: Mapping[str, Any]) -> None: ...


def peer_host(peer: str) -> str:
    """'ipv4:10.0.0.7:53122' -> 'ipv4:10.0.0.7'; 'ipv6:[::1]:5' -> 'ipv6:[::1]': the rate-limit key."""
    match = re.match(r"^(ipv4:[^:]+|ipv6:\[[^\]]*\]|ipv6:%5B.*%5D)(?::\d+)?$", peer or "")
    return match.group(1) if match else (peer or "unknown")


class SecurityAudit:
    def __init__(self, store: _Sink, *, chain: str = SECURITY_CHAIN, per_peer: int = 20, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, max_queue: int = 10_000) -> None:
        self.store, self.chain = store, chain
        self.per_peer, self.window_s, self.clock = per_peer, window_s, clock
        self._windows: dict[str, list[float]] = {}   # peer -> [window start, entries, dropped]
        self._lock = threading.Lock()
        self._overflow_lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(maxsize=max_queue)
        self.overflowed = 0  # entries dropped because the queue was full (since the last overflow entry)
        self._thread = threading.Thread(target=self._write, name="sampan-security-audit", daemon=True)
        self._thread.start()

    def record(self, kind: str, detail: Mapping[str, Any], *, peer: str | None = None) -> bool:
        """Queue an entry unless this peer is over its rate; True if it will be written."""
        key = peer_host(peer if peer is not None else str(detail.get("peer", "")))
        entry = dict(detail)
        with self._lock:
            now = self.clock()
            window = self._windows.get(key)
            if window is None or now - window[0] >= self.window_s:
                dropped = int(window[2]) if window is not None else 0
                window = [now, 0.0, 0.0]
                self._windows[key] = window
                if dropped:
                    entry["dropped_before"] = dropped
            if window[1] >= self.per_peer:
                window[2] += 1
                if window[2] == 1:  # say once per window that this peer is being rate-limited
                    self._put(("rate_limited", {"peer": key, "per_peer": self.per_peer, "window_s": self.window_s}))
                return False
            window[1] += 1
            if len(self._windows) > 10_000:  # forget old peers, never the current one
                for old in [k for k, w in self._windows.items() if now - w[0] >= self.window_s and k != key]:
                    del self._windows[old]
        return self._put((kind, entry))

    def _put(self, item: tuple[str, dict[str, Any]]) -> bool:
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            with self._overflow_lock:
                self.overflowed += 1
            return False

    def _write(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                entries = [item]
                if self._queue.empty():  # everything dropped so far is counted now, not at some later entry
                    with self._overflow_lock:
                        dropped, self.overflowed = self.overflowed, 0
                    if dropped:
                        entries.append(("queue_overflow", {"dropped": dropped, "max_queue": self._queue.maxsize}))
                for kind, detail in entries:
                    try:
                        self.store.log_event(self.chain, kind, detail)
                    except Exception as exc:  # noqa: BLE001 - the plain log keeps it; the agent keeps serving
                        log.error("could not write %s to the audit log: %s", kind, exc)
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Wait until every queued entry is written."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)  # (blocks while the queue is full: the writer is draining it)
        self._thread.join(timeout=10)
