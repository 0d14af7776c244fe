"""The admin's route to link a console account to its OpenID Connect identity (issuer, subject), audited.

Why a route: an OIDC sign-in succeeds only for an (issuer, subject) an admin linked (`sampan.web.oidc`); without a
way to link, the feature needed a Python shell on the coordinator. `PUT /api/v1/users/{id}/oidc` links the
account to a subject of the configured provider, `DELETE` unlinks it; both need `users.manage` (as creating or
disabling an account) and land in the signed audit chain (`cp.oidc_linked` / `cp.oidc_unlinked`, with who did
it). A subject already linked to another account is refused (409): one identity, one account, so the sign-in
never has to choose. Mounted with the OIDC routes (`mount_oidc`), so it exists only when OIDC is configured.
The coordinator's operator can do the same from the shell (`sampan store link-oidc`, audited as `cli:<user>`),
e.g. for the first admin.

No `from __future__ import annotations` here: FastAPI must resolve the routes' annotations (`Who`, `Plane`, imported
inside `link_router`) when they are defined.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update

from sampan.web import db
from sampan.web.errors import Conflict
from sampan.web.roles import Principal, require

__all__ = ["OidcLink", "link_router", "link_subject", "unlink_subject", "link_from_cli"]


class OidcLink(BaseModel):
    """The provider's `sub` claim for this person (the issuer is the configured one)."""

    model_config = ConfigDict(extra="forbid")
    subject: str = Field(min_length=1, max_length=400)


def _link(engine: Any, accounts: Any, audit: Any, user_id: int, issuer: str, subject: str) -> None:
    with engine.connect() as c:
        other = c.execute(select(db.users.c.id).where(db.users.c.oidc_issuer == issuer,
                                                      db.users.c.oidc_subject == subject,
                                                      db.users.c.id != user_id)).first()
    if other is not None:
        raise Conflict(f"this identity is already linked to account {other.id}: unlink it there first", "subject")
    accounts.link_oidc(user_id, issuer, subject)
    audit("oidc_linked", {"user_id": user_id, "issuer": issuer, "subject": subject})


def _unlink(engine: Any, accounts: Any, audit: Any, user_id: int) -> None:
    accounts.user_by_id(user_id)  # 404 for an unknown account
    with engine.begin() as c:
        c.execute(update(db.users).where(db.users.c.id == user_id).values(oidc_issuer=None, oidc_subject=None))
    audit("oidc_unlinked", {"user_id": user_id})


def link_subject(plane: Any, principal: Principal, user_id: int, issuer: str, subject: str) -> None:
    require(principal, "users.manage")
    _link(plane.engine, plane.accounts, lambda kind, detail: plane.audit(principal, kind, detail), user_id, issuer,
          subject)


def unlink_subject(plane: Any, principal: Principal, user_id: int) -> None:
    require(principal, "users.manage")
    _unlink(plane.engine, plane.accounts, lambda kind, detail: plane.audit(principal, kind, detail), user_id)


def link_from_cli(store: Any, username: str, issuer: str | None, subject: str | None, actor: str) -> int:
    """`sampan store link-oidc`: the same link (or, with `subject` None, unlink) by the coordinator's operator,
    audited in the control plane's chain with `actor` (e.g. "cli:<os user>"); returns the account's id."""
    from sampan.web.auth import Accounts
    from sampan.web.errors import NotFound
    from sampan.web.service_base import AUDIT_CHAIN

    db.create_tables(store.engine)
    accounts = Accounts(store.engine)
    row = accounts._user(username)
    if row is None:
        raise NotFound(f"no console account named {username!r}", "user")

    def audit(kind: str, detail: dict[str, Any]) -> None:
        store.log_event(AUDIT_CHAIN, f"cp.{kind}", {"actor": actor, **detail})

    if subject is None:
        _unlink(store.engine, accounts, audit, int(row.id))
    else:
        _link(store.engine, accounts, audit, int(row.id), str(issuer), subject)
    return int(row.id)


def link_router(issuer: str) -> Any:
    """The two routes (FastAPI is imported here only: `link_from_cli` runs without the web extra's server)."""
    from fastapi import APIRouter, Path
    from starlette.responses import Response

    from sampan.web.api import API_PREFIX, Plane, Who

    router = APIRouter(prefix=API_PREFIX, tags=["users"])
    user = Path(ge=1, le=2**31 - 1)

    @router.put("/users/{user_id}/oidc", status_code=204)
    def link(body: OidcLink, who: Who, plane: Plane, user_id: int = user) -> Response:
        """Link the account to the configured provider's subject (audited)."""
        link_subject(plane, who, user_id, issuer, body.subject)
        return Response(status_code=204)

    @router.delete("/users/{user_id}/oidc", status_code=204)
    def unlink(who: Who, plane: Plane, user_id: int = user) -> Response:
        """Remove the account's OpenID Connect link (audited)."""
        unlink_subject(plane, who, user_id)
        return Response(status_code=204)

    return router
