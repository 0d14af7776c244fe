"""Sign-in throttling that slows a password guesser without letting a stranger lock the owner out (R17-PORTAL-8).

Why not a lockout: an account lock that refuses the right password is a denial of service anyone can trigger (five
guesses every few minutes keep the owner, or the embedded admin with its published address, out). Instead:
- failures are counted per (email as typed, client address): `free_failures` attempts, then each further attempt
  from that client for that email waits `first_wait`, doubling per failure up to `max_wait`; a success from that
  client clears its count. A guesser on one address never delays the owner on another.
- failures are also counted per email from every client: once `busy_account` pile up within `window`, every
  client (a new one too) gets only ONE free attempt before its own waits start. This slows a guesser spread over
  many addresses, but a client that has not failed is always let through to the password check, so the owner is
  slowed at most by their own mistakes, never refused.
Threat model: an outsider guessing one account's password from one or many addresses, in parallel. Every attempt is
counted BEFORE its password is checked, inside a transaction that locks the (email, client) key, so parallel
guesses are counted one after the other (none slips in on a stale count). Keys are SHA-256 of the email (typed,
lower-cased) and the client address: unknown emails are throttled exactly like real ones (no enumeration), and the
rate tables hold no addresses. Behind a reverse proxy the client address must be the real one (uvicorn
``--proxy-headers --forwarded-allow-ips``), else every client shares the proxy's address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from sampan.web.auth import sha256_hex
from sampan.web.portal import tables as t
from sampan.web.portal.limits import Limit, RateLimited, when

__all__ = ["SignInThrottle"]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _lock(c: Connection, key: str, now: datetime) -> None:
    """Create the key's row if new, then update it: parallel attempts on the same key wait for this transaction."""
    dialect = postgresql if c.dialect.name == "postgresql" else sqlite if c.dialect.name == "sqlite" else None
    if dialect is not None:
        c.execute(dialect.insert(t.rate_keys).values(key=key, touched_at=now).on_conflict_do_nothing())
    elif c.execute(select(t.rate_keys.c.key).where(t.rate_keys.c.key == key)).first() is None:
        c.execute(insert(t.rate_keys).values(key=key, touched_at=now))
    c.execute(update(t.rate_keys).where(t.rate_keys.c.key == key).values(touched_at=now))


@dataclass(frozen=True)
class SignInThrottle:
    """How sign-in attempts are slowed (see the module's docstring)."""

    free_failures: int = 5
    first_wait: timedelta = timedelta(minutes=1)
    max_wait: timedelta = timedelta(hours=1)
    window: timedelta = timedelta(hours=24)  # failures older than this are forgotten
    busy_account: int = 20  # failures on one email from all clients within `window` that make it "under attack"

    def __post_init__(self) -> None:
        if self.free_failures < 1 or self.busy_account < 1:
            raise ValueError("SignInThrottle.free_failures and busy_account must be at least 1")
        if min(self.first_wait, self.max_wait, self.window) <= timedelta(0):
            raise ValueError("SignInThrottle durations must be positive")

    @staticmethod
    def _keys(email: str, client: str) -> tuple[str, str]:
        typed = (email or "").strip().lower()
        return (f"signin:{sha256_hex(typed + chr(0) + (client or '-'))}", f"signin-email:{sha256_hex(typed)}")

    def admit(self, c: Connection, email: str, client: str, now: datetime) -> None:
        """Count one attempt (before its password is checked), or raise RateLimited (429) while the client must
        wait. Call inside a transaction."""
        pair, account = self._keys(email, client)
        _lock(c, pair, now)
        since = now - self.window
        c.execute(delete(t.rate_events).where(t.rate_events.c.key.in_((pair, account)), t.rate_events.c.at <= since))
        failures = c.execute(select(t.rate_events.c.at).where(t.rate_events.c.key == pair)
                             .order_by(t.rate_events.c.at)).scalars().all()
        on_account = int(c.execute(select(func.count()).select_from(t.rate_events)
                                   .where(t.rate_events.c.key == account)).scalar() or 0)
        free = self.free_failures if on_account < self.busy_account else 1
        if len(failures) >= free:
            wait = min(self.first_wait * (2 ** min(len(failures) - free, 30)), self.max_wait)
            retry = _utc(failures[-1]) + wait
            if now < retry:
                limit = Limit(pair, free, self.window, "failed sign-ins", "for this email from your address",
                              "password")
                raise RateLimited(f"too many failed sign-ins for this email from your address: try again after "
                                  f"{when(retry, now)}", "password", retry_after=retry, limit=limit)
        _lock(c, account, now)
        c.execute(insert(t.rate_events), [{"key": pair, "at": now}, {"key": account, "at": now}])

    def succeeded(self, c: Connection, email: str, client: str) -> None:
        """The right password from this client: its failures are forgotten (the email's total stays)."""
        pair, _account = self._keys(email, client)
        c.execute(delete(t.rate_events).where(t.rate_events.c.key == pair))
