"""Datasets (schema and the size each party's agent publishes, never rows) and the budget mirror.

Why a mirror: each party agent's lifetime budget book is authoritative and refuses any job or step beyond it;
the control plane keeps a copy only to show it (remaining budget in the inbox, spending over time) and to
refuse early an approval that the agent would refuse anyway. The mirror is refreshed from the party's catalogue
whenever the control plane talks to it (registration, approval, run start and view).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update

from sampan.web import db
from sampan.web.errors import Conflict, Invalid, NotFound
from sampan.web.gateway import DatasetInfo
from sampan.web.roles import Principal, allowed, require
from sampan.web.service_base import PlaneBase, row_dict

__all__ = ["DataService", "budget_dict"]


def budget_dict(row: Any) -> dict[str, Any]:
    """A mirror row with its remaining (epsilon, delta) computed (None where no total is set)."""
    out = row_dict(row)
    for unit in ("epsilon", "delta"):
        total = out[f"total_{unit}"]
        out[f"remaining_{unit}"] = None if total is None else max(
            0.0, float(total) - float(out[f"spent_{unit}"]) - float(out[f"reserved_{unit}"]))
    return out


class DataService(PlaneBase):
    def catalogue(self, principal: Principal, party: str) -> list[dict[str, Any]]:
        """The party's datasets as its agent reports them (an operator sees only its own organisation's)."""
        require(principal, "catalogue.read", party)
        found = self._catalogue(party)
        return [{"party": d.party, "name": d.name, "columns": d.columns, "label": d.label, "rows": d.rows}
                for d in found]

    def _catalogue(self, party: str) -> list[DatasetInfo]:
        if party not in {p.name for p in self.gateway.parties()}:
            raise NotFound(f"no party {party!r} is known to the coordinator", "party")
        found = self.gateway.catalogue(party)
        for info in found:
            self._mirror(info)
        return found

    def _mirror(self, info: DatasetInfo) -> None:
        if info.budget is None:
            return
        b = info.budget
        values = {"total_epsilon": b.total_epsilon, "total_delta": b.total_delta, "spent_epsilon": b.spent_epsilon,
                  "spent_delta": b.spent_delta, "reserved_epsilon": b.reserved_epsilon,
                  "reserved_delta": b.reserved_delta, "history": list(b.history), "updated_at": self.clock()}
        with self.engine.begin() as c:
            where = (db.budgets.c.party == info.party) & (db.budgets.c.dataset == info.name)
            if c.execute(update(db.budgets).where(where).values(**values)).rowcount == 0:
                c.execute(insert(db.budgets).values(party=info.party, dataset=info.name, **values))

    def refresh_budgets(self, party: str) -> None:
        """Re-read the party's budgets into the mirror (quietly skipped when the party is unreachable)."""
        try:
            self._catalogue(party)
        except Exception:  # noqa: BLE001 - a display copy: an absent agent leaves the last known figures
            return

    def register_dataset(self, principal: Principal, consortium_id: int, party: str, name: str) -> dict[str, Any]:
        """Record one of the party's agent datasets for the consortium: schema and row count only."""
        require(principal, "dataset.register", party)
        self.visible_consortium(principal, consortium_id)
        if party not in self.member_organisations(consortium_id):
            raise Invalid(f"{party!r} is not a member of consortium {consortium_id}", "party")
        info = next((d for d in self._catalogue(party) if d.name == name), None)
        if info is None:
            raise NotFound(f"the agent of party {party!r} serves no dataset {name!r}", "name")
        schema = {"columns": dict(info.columns), "label": info.label}
        with self.engine.begin() as c:
            if c.execute(select(db.datasets.c.id).where(db.datasets.c.consortium_id == consortium_id,
                                                         db.datasets.c.party == party,
                                                         db.datasets.c.name == name)).first():
                raise Conflict(f"dataset {name!r} of {party!r} is already registered", "name")
            did = db.new_id(c.execute(insert(db.datasets).values(
                consortium_id=consortium_id, party=party, name=name, schema=schema, row_count=info.rows,
                registered_by=principal.actor, created_at=self.clock())))
        self.audit(principal, "dataset_registered", {"consortium_id": consortium_id, "party": party, "dataset": name,
                                                     "columns": sorted(info.columns), "rows": info.rows})
        return self.dataset(principal, did)

    def dataset(self, principal: Principal, dataset_id: int) -> dict[str, Any]:
        require(principal, "dataset.read")
        row = self._one(db.datasets, db.datasets.c.id == dataset_id, f"dataset {dataset_id}", "dataset_id")
        self.visible_consortium(principal, row.consortium_id)
        return {**row_dict(row), "budget": self._visible_budget(principal, row.party, row.name)}

    def datasets(self, principal: Principal, consortium_id: int) -> list[dict[str, Any]]:
        require(principal, "dataset.read")
        self.visible_consortium(principal, consortium_id)
        with self.engine.connect() as c:
            rows = list(c.execute(select(db.datasets).where(db.datasets.c.consortium_id == consortium_id)
                                  .order_by(db.datasets.c.id)))
        return [{**row_dict(r), "budget": self._visible_budget(principal, r.party, r.name)} for r in rows]

    def _visible_budget(self, principal: Principal, party: str, dataset: str) -> dict[str, Any] | None:
        return self.budget(party, dataset) if allowed(principal, "budget.read", party) else None

    def budget(self, party: str, dataset: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(select(db.budgets).where(db.budgets.c.party == party,
                                                     db.budgets.c.dataset == dataset)).first()
        return budget_dict(row) if row is not None else None

    def budgets(self, principal: Principal, party: str) -> list[dict[str, Any]]:
        """A party's budget mirror rows (an operator sees only its own organisation's: a partner's spending
        is that partner's business)."""
        require(principal, "budget.read", party)
        with self.engine.connect() as c:
            rows = list(c.execute(select(db.budgets).where(db.budgets.c.party == party)
                                  .order_by(db.budgets.c.dataset)))
        return [budget_dict(r) for r in rows]
