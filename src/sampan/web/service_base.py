"""What every part of the control-plane service shares: the store, the gateway, accounts, the audit trail.

Why: the service is split by resource (consortia, datasets, jobs, results) to keep each module small; each part
reaches the database, the gateway and the audit log through this one base, so every action is audited the same
way: one entry in the store's signed, hash-chained audit log under the chain `AUDIT_CHAIN`, naming the actor.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from sampan.runtime.store import Store
from sampan.web import db
from sampan.web.auth import Accounts, Clock
from sampan.web.errors import NotFound
from sampan.web.gateway import AgentGateway
from sampan.web.roles import Principal

__all__ = ["AUDIT_CHAIN", "PlaneBase", "row_dict"]

AUDIT_CHAIN = "control-plane"


def row_dict(row: Any) -> dict[str, Any]:
    """A table row as JSON-ready values (datetimes as ISO text, in UTC)."""
    out: dict[str, Any] = {}
    for key, value in row._mapping.items():
        if isinstance(value, datetime):
            value = (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
        out[key] = value
    return out


class PlaneBase:
    """Shared state of the `ControlPlane` parts."""

    def __init__(self, store: Store, gateway: AgentGateway, accounts: Accounts | None = None,
                 clock: Clock | None = None) -> None:
        db.create_tables(store.engine)
        self.store = store
        self.gateway = gateway
        self.engine: Engine = store.engine
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.accounts = accounts or Accounts(store.engine, clock=self.clock)
        # Organisations' certificates this coordinator already holds (`sampan console` reads them from its folder):
        # recorded with a member invited without a pasted one, so the members list shows what its agent uses.
        self.known_certificates: dict[str, str] = {}

    def audit(self, principal: Principal | None, kind: str, detail: Mapping[str, Any]) -> None:
        """Append one control-plane action to the signed audit chain."""
        actor = principal.actor if principal is not None else "system"
        self.store.log_event(AUDIT_CHAIN, f"cp.{kind}", {"actor": actor, **detail})

    def _one(self, table: Any, where: Any, what: str, field: str) -> Any:
        with self.engine.connect() as c:
            row = c.execute(select(table).where(where)).first()
        if row is None:
            raise NotFound(f"no {what}", field)
        return row

    def member_organisations(self, consortium_id: int) -> list[str]:
        with self.engine.connect() as c:
            return [str(r.organisation) for r in c.execute(
                select(db.members.c.organisation).where(db.members.c.consortium_id == consortium_id)
                .order_by(db.members.c.id))]

    def visible_consortium(self, principal: Principal, consortium_id: int) -> Any:
        """The consortium row, if the principal may see it: an operator only sees its own organisation's.
        Others' consortia answer 404, as if absent (their names are not the operator's business)."""
        row = self._one(db.consortia, db.consortia.c.id == consortium_id, f"consortium {consortium_id}",
                        "consortium_id")
        if principal.role == "party_operator" and principal.organisation not in self.member_organisations(row.id):
            raise NotFound(f"no consortium {consortium_id}", "consortium_id")
        return row
