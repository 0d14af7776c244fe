"""The egress allow-list an administrator edits on the admin page, kept in the portal's settings table.

Why stored: the portal refuses private, loopback and link-local endpoints unless allow-listed (SSRF: an applicant
must not make the portal probe the operator's own network); an administrator's exception must survive a restart,
and every change is in the signed audit log (who widened the portal's reach, and to what). The entries are
validated by building the `EgressPolicy` they describe before anything is saved; the running `Portal` then uses
the new policy for every qualification and evaluation started after the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from sampan.web.errors import Invalid
from sampan.web.portal import tables as t

__all__ = ["KEY", "stored_allow_list", "save_allow_list"]

KEY = "egress_allow"
MAX_ENTRIES = 100


def stored_allow_list(engine: Engine) -> list[str] | None:
    """The saved allow-list, or None when an administrator never saved one."""
    t.create_portal_tables(engine)
    with engine.connect() as c:
        row = c.execute(select(t.settings.c.value).where(t.settings.c.key == KEY)).first()
    return [str(v) for v in row.value] if row is not None and isinstance(row.value, list) else None


def save_allow_list(portal: Any, principal: Any, entries: Sequence[str]) -> list[str]:
    """Validate, save, audit and apply ``entries`` (admins only); returns the list as the policy reads it."""
    from sampan.verify.egress import EgressPolicy

    portal.require(principal, ("admin",), "changing the egress allow-list")
    if len(entries) > MAX_ENTRIES:
        raise Invalid(f"at most {MAX_ENTRIES} allow-list entries", "allow")
    try:
        policy = EgressPolicy(list(entries), resolver=getattr(portal.egress, "_resolver", None))
    except ValueError as exc:
        raise Invalid(str(exc), "allow") from None
    allow = policy.allow
    with portal.engine.begin() as c:
        done = c.execute(update(t.settings).where(t.settings.c.key == KEY).values(value=allow))
        if done.rowcount == 0:
            c.execute(t.settings.insert().values(key=KEY, value=allow))
    before = list(getattr(portal.egress, "allow", ()))
    portal.egress = policy
    portal.audit(principal, "allow_list_changed", {"before": before, "after": allow})
    return allow
