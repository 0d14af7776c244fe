"""What every part of the `Portal` shares: the store, the folder, accounts, the audit trail, role and ownership checks.

Why one base: the portal is split by resource (projects and questionnaires, evaluations, releases) to keep each
module small; each part reaches the database, the sealed tokens and the audit log through this base, so every
action is checked and audited the same way. Visibility: an applicant sees only its own projects (and their
evaluations and requests); anything else answers NotFound exactly as if absent, so ids cannot be probed.
Reviewers and admins see everything; reviewers change nothing but release decisions.
Audit: one entry per submission in the store's signed, hash-chained audit log under the chain "portal", naming the
actor (as `sampan.web.service_base` does for the control plane). The bench token never reaches an entry, a log
line or a returned value: `scrub` removes it from any text that came back from the network side.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from sampan.files import private_directory
from sampan.runtime.store import Store
from sampan.web.errors import Forbidden, NotFound
from sampan.web.portal import tables as t
from sampan.web.portal.accounts import Clock, PortalAccounts, PortalPrincipal
from sampan.web.portal.inflight import CheckSlots
from sampan.web.portal.limits import RateLimited, RateLimits
from sampan.web.portal.seal import BenchTokenSeal

__all__ = ["AUDIT_CHAIN", "PortalBase", "iso", "scrub", "server_fingerprint"]

AUDIT_CHAIN = "portal"
STAFF = ("reviewer", "admin")


def iso(value: datetime | None) -> str | None:
    """A stored time as ISO text in UTC (SQLite gives naive datetimes back: they were written in UTC)."""
    if value is None:
        return None
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).isoformat()


def server_fingerprint(project: Any) -> str:
    """SHA-256 of what a qualification check checks: endpoint URL, certificate and the SEALED token (each seal has
    a fresh nonce, so any token change, even to the same value, changes it; the token itself is never hashed)."""
    fields = [str(project.endpoint_url or ""), str(project.tls_cert_pem or ""), str(project.bench_token_sealed or "")]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


def scrub(value: Any, secret: str) -> Any:
    """`value` with every occurrence of `secret` replaced (strings inside dicts and lists too)."""
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, "[bench token]")
    if isinstance(value, Mapping):
        return {k: scrub(v, secret) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secret) for v in value]
    return value


class PortalBase:
    """Shared state of the `Portal` parts."""

    def __init__(self, store: Store, folder: str | Path, *, egress: Any, runner: Any = None,
                 clock: Clock | None = None, accounts: PortalAccounts | None = None,
                 qualifier: Callable[..., Any] | None = None, limits: RateLimits | None = None) -> None:
        t.create_portal_tables(store.engine)
        self.store = store
        self.engine = store.engine
        self.folder = private_directory(Path(folder))
        self.egress = egress
        self.runner = runner
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.accounts = accounts or PortalAccounts(store.engine, clock=self.clock)
        if self.accounts.audit is None:
            self.accounts.audit = self._audit_as
        self.seal = BenchTokenSeal(self.folder)
        self._qualifier = qualifier
        self.limits = limits or RateLimits()
        self.check_slots = CheckSlots()  # qualification checks in flight (R17-PORTAL-10)
        # The embedded mode's in-repo platforms: endpoint URL -> "weak" / "sampan"; an evaluation of such a project
        # has the runner's worker start that platform itself (TargetSpec.local_platform).
        self.local_platforms: dict[str, str] = {}

    # --- audit ---------------------------------------------------------------------------------
    def _audit_as(self, actor: str, kind: str, detail: Mapping[str, Any]) -> None:
        self.store.log_event(AUDIT_CHAIN, f"portal.{kind}", {"actor": actor, **detail})

    def audit(self, principal: PortalPrincipal | None, kind: str, detail: Mapping[str, Any]) -> None:
        """Append one portal action to the signed audit chain."""
        self._audit_as(principal.actor if principal is not None else "system", kind, detail)

    def audit_refusal(self, principal: PortalPrincipal, exc: RateLimited, action: str,
                      detail: Mapping[str, Any]) -> None:
        """Record a rate-limit refusal (who, what, which limit, until when) before it goes back to the caller."""
        limit = exc.limit
        self.audit(principal, "rate_limited", {"action": action, **detail, "limit": limit.key, "max": limit.count,
                                               "window_s": int(limit.window.total_seconds()),
                                               "retry_after": iso(exc.retry_after)})

    @staticmethod
    def qualifies(project: Any, qualification: Any) -> bool:
        """A qualification row counts as passed for ``project`` only when it passed AND checked exactly the
        project's current server information (R17-PORTAL-1: a check that ran while it changed does not count)."""
        return (qualification is not None and qualification.status == "passed"
                and qualification.server_fingerprint == server_fingerprint(project))

    # --- checks --------------------------------------------------------------------------------
    @staticmethod
    def require(principal: PortalPrincipal, roles: tuple[str, ...], what: str) -> None:
        if principal.role not in roles:
            raise Forbidden(f"{what} is for the {' or '.join(roles)} role, not {principal.role}", "role")

    @staticmethod
    def is_staff(principal: PortalPrincipal) -> bool:
        return principal.role in STAFF

    def project_row(self, principal: PortalPrincipal, project_id: int) -> Any:
        """The project, if the principal may see it (its owner, reviewers, admins); NotFound otherwise."""
        with self.engine.connect() as c:
            row = c.execute(select(t.projects).where(t.projects.c.id == int(project_id))).first()
        if row is None or (not self.is_staff(principal) and int(row.owner_id) != principal.user_id):
            raise NotFound(f"no project {project_id}", "project_id")
        return row

    def own_project_row(self, principal: PortalPrincipal, project_id: int, what: str) -> Any:
        """The project, if the principal may act on it: its owner, or an admin (reviewers only read)."""
        row = self.project_row(principal, project_id)
        if int(row.owner_id) != principal.user_id and principal.role != "admin":
            raise Forbidden(f"only the project's owner or an admin may {what}", "project_id")
        return row

    def evaluation_row(self, principal: PortalPrincipal, evaluation_id: int) -> tuple[Any, Any]:
        """(evaluation, project) if the principal may see the project; NotFound otherwise."""
        with self.engine.connect() as c:
            row = c.execute(select(t.evaluations).where(t.evaluations.c.id == int(evaluation_id))).first()
        if row is None:
            raise NotFound(f"no evaluation {evaluation_id}", "evaluation_id")
        try:
            project = self.project_row(principal, int(row.project_id))
        except NotFound:
            raise NotFound(f"no evaluation {evaluation_id}", "evaluation_id") from None
        return row, project

    def bench_token(self, project: Any) -> str:
        """The project's bench token, opened only to hand it to the qualification check or the runner."""
        return self.seal.open(int(project.id), str(project.bench_token_sealed))
