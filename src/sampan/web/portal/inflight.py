"""Bounds on qualification checks running at the same time: per account and in the whole portal process.

Why (R17-PORTAL-10): `Portal.qualify` runs inside the page request, on one of the web server's worker threads
(Starlette's pool: 40), and a check may take ~10 s per network step plus a minute for the smoke job against a
deliberately slow endpoint. The hourly rate limits (`sampan.web.portal.limits`) count checks but not checks IN
FLIGHT: one applicant could start its whole hourly budget at once, and two accounts could hold every thread, so
no page of the portal (sign-in included) would answer. Here a check takes a slot before any outbound work: at most
``per_account`` checks per account and ``total`` in the process; the next one is refused at once ("a qualification
check is already running ..."), never queued (a queue would hold the thread just the same).
Threat model: an authenticated applicant (or several) firing checks in parallel against a slow endpoint. The
bound is per portal PROCESS: a deployment with several worker processes multiplies ``total`` by their number
(the per-account bound, too, per process); slots live in memory, so a restart frees them (no stale "running").
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sampan.web.errors import Conflict

__all__ = ["CheckSlots"]


class CheckSlots:
    """`with slots.take(account_key, per_account, total): ...` runs the check in a slot, or raises Conflict naming
    why none is free. The bounds come with each call (the portal's current `RateLimits`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}

    def running(self, account: str | None = None) -> int:
        """Checks running now: of one account, or of everyone."""
        with self._lock:
            return self._running.get(account, 0) if account is not None else sum(self._running.values())

    @contextmanager
    def take(self, account: str, per_account: int = 1, total: int = 4) -> Iterator[None]:
        with self._lock:
            mine = self._running.get(account, 0)
            if mine >= per_account:
                raise Conflict("a qualification check is already running for your account: wait for its result "
                               "(at most a minute or two) before starting another", "account")
            if sum(self._running.values()) >= total:
                raise Conflict("the portal is running as many qualification checks as it allows at once: try "
                               "again in a minute", "project_id")
            self._running[account] = mine + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._running.get(account, 1) - 1
                if left > 0:
                    self._running[account] = left
                else:
                    self._running.pop(account, None)
