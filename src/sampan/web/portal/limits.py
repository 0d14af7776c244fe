"""Rate limits on the portal actions that make the portal send requests to an applicant's endpoint.

Why: a qualification check and an evaluation each make the portal connect to an address the applicant chose;
without a bound, an applicant (or a stolen session) could use the portal to send an endless stream of requests to
a third party's server, or tie up the evaluation workers. Threat model: an authenticated applicant repeats
`qualify` or `start_evaluation`, spreads them over many projects, fires them in parallel, or waits for a portal
restart. So each request is counted in the database BEFORE the outbound work (a restart forgets nothing; a check
still running counts), per project and per applicant (many projects do not multiply the budget), and counting is
serialised per key by a locked row (parallel requests cannot all see "one left"). A refusal says when to try
again and is written to the signed audit log by the caller. Staff accounts are bound by the per-project limits
only (they are few and made by an admin).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from sampan.web.errors import ControlPlaneError
from sampan.web.portal import tables as t

__all__ = ["Limit", "RateLimited", "RateLimits", "hold", "reserve", "used", "when"]


class RateLimited(ControlPlaneError):
    """Too many requests of one kind in the window: HTTP 429; `retry_after` is when one is free again (UTC)."""

    status = 429

    def __init__(self, message: str, field: str | None, *, retry_after: datetime, limit: Limit) -> None:
        super().__init__(message, field)
        self.retry_after = retry_after
        self.limit = limit


@dataclass(frozen=True)
class Limit:
    """At most `count` counted requests under `key` in the `window` before now (a request made exactly one window
    ago no longer counts); `what`/`per`/`field` word the refusal."""

    key: str
    count: int
    window: timedelta
    what: str  # "qualification checks"
    per: str  # "for this project"
    field: str


@dataclass(frozen=True)
class RateLimits:
    """The portal's limits (`Portal(..., limits=RateLimits(...))`); None switches one off.

    Defaults: 10 qualification checks per project and 30 per applicant in any hour (a vendor fixing its endpoint
    needs a few tries, not hundreds); 5 evaluation starts per applicant in any day (one evaluation runs for
    minutes to an hour and only one per project at a time); 25 projects per applicant in all (R17-PORTAL-11: a
    vendor has a few platforms; every project costs the portal a row, a sealed token, an audit entry and a line on
    every staff list). Checks IN FLIGHT (R17-PORTAL-10: each holds a page thread for up to a minute and a half):
    at most `checks_in_flight_per_account` per account and `checks_in_flight_total` in the whole portal process
    (`sampan.web.portal.inflight`); those two cannot be switched off."""

    qualifications_per_project: int | None = 10
    qualifications_per_applicant: int | None = 30
    qualification_window: timedelta = timedelta(hours=1)
    evaluations_per_applicant: int | None = 5
    evaluation_window: timedelta = timedelta(days=1)
    projects_per_applicant: int | None = 25
    checks_in_flight_per_account: int = 1
    checks_in_flight_total: int = 4

    def __post_init__(self) -> None:
        for name in ("checks_in_flight_per_account", "checks_in_flight_total"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"RateLimits.{name} must be a whole number >= 1")
        for name in ("qualifications_per_project", "qualifications_per_applicant", "evaluations_per_applicant",
                     "projects_per_applicant"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"RateLimits.{name} must be a whole number >= 1, or None for no limit")
        for name in ("qualification_window", "evaluation_window"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"RateLimits.{name} must be a positive duration")

    def for_qualify(self, project_id: int, user_id: int, applicant: bool) -> list[Limit]:
        out = []
        if self.qualifications_per_project is not None:
            out.append(Limit(f"qualify:project:{project_id}", self.qualifications_per_project,
                             self.qualification_window, "qualification checks", "for this project", "project_id"))
        if applicant and self.qualifications_per_applicant is not None:
            out.append(Limit(f"qualify:user:{user_id}", self.qualifications_per_applicant,
                             self.qualification_window, "qualification checks", "for your account", "account"))
        return out

    def for_evaluation(self, user_id: int, applicant: bool) -> list[Limit]:
        if not applicant or self.evaluations_per_applicant is None:
            return []
        return [Limit(f"evaluate:user:{user_id}", self.evaluations_per_applicant, self.evaluation_window,
                      "evaluation starts", "for your account", "account")]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _window_words(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{unit}" if n == 1 else f"{n} {unit}s"
    return f"{seconds} seconds"


def when(retry: datetime, now: datetime) -> str:
    """"HH:MM UTC" (rounded up to the minute), with the date when it is not today."""
    retry = _utc(retry).astimezone(UTC)
    minute = datetime.fromtimestamp(math.ceil(retry.timestamp() / 60) * 60, UTC)
    same_day = minute.date() == _utc(now).astimezone(UTC).date()
    return minute.strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")


def hold(c: Connection, key: str, now: datetime) -> None:
    """Serialise this transaction with every other one that holds ``key`` (a count-then-insert under a cap)."""
    _lock(c, key, now)


def _lock(c: Connection, key: str, now: datetime) -> None:
    """Create the key's row if new (no error if a parallel request just did), then lock it by updating it: a
    parallel request for the same key waits here until this transaction ends (row lock on PostgreSQL, the write
    lock on SQLite), and then sees the event this one added."""
    dialect = postgresql if c.dialect.name == "postgresql" else sqlite if c.dialect.name == "sqlite" else None
    if dialect is not None:
        c.execute(dialect.insert(t.rate_keys).values(key=key, touched_at=now).on_conflict_do_nothing())
    elif c.execute(select(t.rate_keys.c.key).where(t.rate_keys.c.key == key)).first() is None:
        c.execute(insert(t.rate_keys).values(key=key, touched_at=now))
    c.execute(update(t.rate_keys).where(t.rate_keys.c.key == key).values(touched_at=now))


def reserve(c: Connection, limits: Sequence[Limit], now: datetime) -> None:
    """Count one request under every limit, or raise RateLimited (counting nothing) if any is used up. Call it
    inside the transaction that records the request, before any outbound work."""
    refusal: RateLimited | None = None
    for limit in sorted(limits, key=lambda lim: lim.key):  # one lock order: no deadlock between two keys
        _lock(c, limit.key, now)
        since = now - limit.window
        c.execute(delete(t.rate_events).where(t.rate_events.c.key == limit.key, t.rate_events.c.at <= since))
        used = c.execute(select(t.rate_events.c.at).where(t.rate_events.c.key == limit.key,
                                                          t.rate_events.c.at > since)
                         .order_by(t.rate_events.c.at)).scalars().all()
        if len(used) >= limit.count:
            retry = _utc(used[len(used) - limit.count]) + limit.window
            if refusal is None or retry > refusal.retry_after:
                refusal = RateLimited(
                    f"too many {limit.what} {limit.per}: at most {limit.count} per {_window_words(limit.window)}; "
                    f"try again after {when(retry, now)}", limit.field, retry_after=retry, limit=limit)
    if refusal is not None:
        raise refusal
    for limit in limits:
        c.execute(insert(t.rate_events).values(key=limit.key, at=now))


def used(c: Connection, key: str, window: timedelta, now: datetime) -> int:
    """How many requests `key` made in the window ending now (for pages and tests)."""
    return int(c.execute(select(func.count()).select_from(t.rate_events).where(
        t.rate_events.c.key == key, t.rate_events.c.at > now - window)).scalar() or 0)
