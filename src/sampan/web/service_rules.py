"""Standing rules per party: added and withdrawn in the console, relayed to the party's agent, which decides.

A rule lives in two places: here (what the console shows) and at the party's agent (what approves jobs, and only
where the party accepts relayed decisions, `[consent] console_decisions`). The agent is asked first, so a refusal
or an agent that cannot be reached changes nothing here (a 409), and a rule withdrawn here is withdrawn there too
(review R14-WEB-15).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert, select, update

from sampan.web import db
from sampan.web.errors import Conflict, Invalid, NotFound
from sampan.web.roles import Principal, require
from sampan.web.service_base import PlaneBase, row_dict

__all__ = ["RulesService"]


class RulesService(PlaneBase):
    # --- standing rules --------------------------------------------------------------------------------
    def add_rule(self, principal: Principal, party: str, rule: Mapping[str, Any]) -> dict[str, Any]:
        """A standing rule for the party (validated as `StandingRule`). When the gateway has
        `add_rule(party, rule, decided_by)`, the rule is relayed to the party's agent first, which keeps and applies
        its own copy only if it accepts relayed decisions (`[consent] console_decisions`); a refusal is a 409 and
        nothing is stored here."""
        from pydantic import ValidationError

        from sampan.deploy.consent.rules import StandingRule

        require(principal, "rule.manage", party)
        try:
            parsed = StandingRule.model_validate({**dict(rule), "party": party})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise Invalid(f"rule: {first['msg']}", ".".join(str(x) for x in first["loc"]) or "rule") from None
        body = parsed.model_dump(mode="json")
        relay = getattr(self.gateway, "add_rule", None)  # optional: the agent applies its own copy of the rule
        if relay is not None:
            from sampan.deploy.consent.approval import ConsentRefused

            try:
                relay(party, body, principal.actor)
            except ConsentRefused as exc:
                raise Conflict(f"the agent of party {party!r} refused the rule: {exc.reason}", "rule") from None
        with self.engine.begin() as c:
            rid = db.new_id(c.execute(insert(db.rules).values(party=party, rule=body, created_by=principal.actor,
                                                              active=True, created_at=self.clock())))
        self.audit(principal, "rule_added", {"party": party, "rule_id": rid, "rule": body})
        return {"id": rid, "party": party, "rule": body, "active": True}

    def rules(self, principal: Principal, party: str) -> list[dict[str, Any]]:
        require(principal, "rule.read", party)
        with self.engine.connect() as c:
            return [row_dict(r) for r in c.execute(select(db.rules).where(db.rules.c.party == party)
                                                   .order_by(db.rules.c.id))]

    def remove_rule(self, principal: Principal, party: str, rule_id: int) -> None:
        """Withdraw a standing rule. When the gateway has `remove_rule(party, rule_id, decided_by)`, the removal is
        relayed to the party's agent first, which drops its own copy (review R14-WEB-15: otherwise the agent kept
        approving by it); a refusal, or an agent that cannot be reached, is a 409 and nothing changes here."""
        require(principal, "rule.manage", party)
        with self.engine.connect() as c:
            row = c.execute(select(db.rules).where(db.rules.c.id == rule_id, db.rules.c.party == party)).first()
        if row is None:
            raise NotFound(f"no rule {rule_id} of {party!r}", "rule_id")
        relay = getattr(self.gateway, "remove_rule", None)
        if relay is not None and row.active:
            from sampan.deploy.consent.approval import ConsentRefused

            try:
                relay(party, str((row.rule or {}).get("id")), principal.actor)
            except ConsentRefused as exc:
                self.audit(principal, "rule_remove_refused", {"party": party, "rule_id": rule_id,
                                                              "reason": exc.reason})
                raise Conflict(f"the agent of party {party!r} did not remove the rule: {exc.reason}; it stays in force",
                               "rule_id") from None
        with self.engine.begin() as c:
            c.execute(update(db.rules).where(db.rules.c.id == rule_id, db.rules.c.party == party)
                      .values(active=False))
        self.audit(principal, "rule_removed", {"party": party, "rule_id": rule_id})
