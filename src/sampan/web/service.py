"""`ControlPlane`: the consortium control plane's domain service, used by the REST API and the web console.

Every operation takes the acting `Principal` and checks `sampan.web.roles` first; every change is appended to
the store's signed, hash-chained audit log (chain ``control-plane``). The service never reads a party's rows:
datasets are what the party's agent reports (schema, row count), approvals are what its agent signs.
Built by resource (see the mixed-in parts) so each module stays small.
"""

from __future__ import annotations

from typing import Any

from sampan.runtime.store import Store
from sampan.web.auth import Accounts, AuthSettings, Clock
from sampan.web.gateway import AgentGateway
from sampan.web.roles import Principal, require
from sampan.web.service_base import AUDIT_CHAIN, PlaneBase
from sampan.web.service_consortia import ConsortiaService
from sampan.web.service_jobs import JobsService
from sampan.web.service_results import ResultsService

__all__ = ["AUDIT_CHAIN", "ControlPlane"]


class ControlPlane(ConsortiaService, JobsService, ResultsService, PlaneBase):
    """The control plane on one store (SQLite or PostgreSQL) and one gateway to the party agents."""

    @classmethod
    def open(cls, store_url: str | None, gateway: AgentGateway, *, clock: Clock | None = None,
             auth: AuthSettings | None = None, audit_key: str | None = None) -> ControlPlane:
        store = Store.open(store_url, audit_key=audit_key)
        accounts = Accounts(store.engine, auth, clock)
        return cls(store, gateway, accounts, clock)

    def parties(self, principal: Principal) -> list[dict[str, Any]]:
        """The party agents the coordinator knows and whether each is connected."""
        require(principal, "parties.read")
        return [{"name": p.name, "connected": p.connected, "last_seen": p.last_seen} for p in self.gateway.parties()]

    def me(self, principal: Principal) -> dict[str, Any]:
        require(principal, "self.read")
        row = self.accounts.user_by_id(principal.user_id)
        return {"id": principal.user_id, "username": principal.username, "role": principal.role,
                "organisation": principal.organisation, "totp_enabled": bool(row.totp_confirmed),
                "must_change_password": bool(row.must_change_password)}
