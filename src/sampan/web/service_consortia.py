"""Consortia, their members (organisations with certificates), and accounts: the admin's part of the service.

Inviting an organisation makes its party-operator account with a one-time password shown once (the operator
must change it at first sign-in); an existing operator account of that organisation is reused.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from sampan.web import db
from sampan.web.errors import Conflict, Invalid
from sampan.web.roles import Principal, require
from sampan.web.service_base import PlaneBase, row_dict

__all__ = ["ConsortiaService"]

_MEMBER_ROLES = ("bank", "label_holder", "feature_holder", "payment_provider", "platform", "observer")


def _check_name(value: str, field: str) -> str:
    value = value.strip()
    if not value or len(value) > 200 or any(ord(ch) < 32 for ch in value):
        raise Invalid(f"{field} must be 1-200 printable characters", field)
    return value


def _check_certificate(pem: str, organisation: str) -> None:
    """The member's certificate must parse and name the organisation (CN), so approvals can be matched to it."""
    from cryptography import x509

    from sampan.crypto.identity import IdentityError, certificate_identity

    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        name, _role = certificate_identity(cert, organisation)
    except (ValueError, UnicodeEncodeError, IdentityError) as exc:
        raise Invalid(f"the certificate is not a member certificate in PEM ({exc})", "certificate_pem") from None
    if name != organisation:
        raise Invalid(f"the certificate names {name!r}, not {organisation!r}", "certificate_pem")


class ConsortiaService(PlaneBase):
    def create_consortium(self, principal: Principal, name: str, description: str = "") -> dict[str, Any]:
        require(principal, "consortium.create")
        name = _check_name(name, "name")
        with self.engine.begin() as c:
            if c.execute(select(db.consortia.c.id).where(db.consortia.c.name == name)).first() is not None:
                raise Conflict(f"a consortium named {name!r} exists", "name")
            cid = db.new_id(c.execute(insert(db.consortia).values(
                name=name, description=description[:2000], created_by=principal.actor, created_at=self.clock())))
        self.audit(principal, "consortium_created", {"consortium_id": cid, "name": name})
        return self.consortium(principal, cid)

    def consortia(self, principal: Principal) -> list[dict[str, Any]]:
        require(principal, "consortium.read")
        with self.engine.connect() as c:
            rows = list(c.execute(select(db.consortia).order_by(db.consortia.c.id)))
        visible = [r for r in rows if principal.role != "party_operator"
                   or principal.organisation in self.member_organisations(r.id)]
        return [{**row_dict(r), "members": self.member_organisations(r.id)} for r in visible]

    def consortium(self, principal: Principal, consortium_id: int) -> dict[str, Any]:
        require(principal, "consortium.read")
        row = self.visible_consortium(principal, consortium_id)
        with self.engine.connect() as c:
            members = [row_dict(m) for m in c.execute(select(db.members).where(
                db.members.c.consortium_id == consortium_id).order_by(db.members.c.id))]
        return {**row_dict(row), "members": [m["organisation"] for m in members], "member_details": members}

    def invite_member(self, principal: Principal, consortium_id: int, organisation: str, role: str = "bank",
                      certificate_pem: str | None = None, operator_username: str | None = None) -> dict[str, Any]:
        """Add an organisation and make (or reuse) its operator account; the one-time password is returned once."""
        require(principal, "member.invite")
        self.visible_consortium(principal, consortium_id)
        organisation = _check_name(organisation, "organisation")
        if role not in _MEMBER_ROLES:
            raise Invalid(f"role must be one of {', '.join(_MEMBER_ROLES)}", "role")
        certificate_pem = certificate_pem or self.known_certificates.get(organisation)
        if certificate_pem:
            _check_certificate(certificate_pem, organisation)
        with self.engine.begin() as c:
            if c.execute(select(db.members.c.id).where(db.members.c.consortium_id == consortium_id,
                                                        db.members.c.organisation == organisation)).first():
                raise Conflict(f"{organisation!r} is already a member", "organisation")
            c.execute(insert(db.members).values(consortium_id=consortium_id, organisation=organisation, role=role,
                                                certificate_pem=certificate_pem, invited_by=principal.actor,
                                                created_at=self.clock()))
            existing = c.execute(select(db.users).where(db.users.c.organisation == organisation,
                                                        db.users.c.role == "party_operator")).first()
            one_time: str | None = None
            if existing is not None:
                username = str(existing.username)
            else:  # in the member's transaction: a refused account adds no member either (R14-WEB-9)
                user, one_time = self.accounts.create_user(operator_username or f"{organisation}-operator",
                                                           "party_operator", organisation, connection=c)
                username = user.username
        self.audit(principal, "member_invited", {"consortium_id": consortium_id, "organisation": organisation,
                                                 "role": role, "operator": username,
                                                 "certificate": bool(certificate_pem)})
        return {"consortium_id": consortium_id, "organisation": organisation, "role": role,
                "operator_username": username, "one_time_password": one_time}

    # --- accounts (admin) --------------------------------------------------------------------------
    def create_user(self, principal: Principal, username: str, role: str,
                    organisation: str | None = None) -> dict[str, Any]:
        require(principal, "users.manage")
        user, one_time = self.accounts.create_user(username, role, organisation)
        self.audit(principal, "user_created", {"username": user.username, "role": role,
                                               "organisation": organisation})
        return {"id": user.user_id, "username": user.username, "role": role, "organisation": organisation,
                "one_time_password": one_time}

    def users(self, principal: Principal) -> list[dict[str, Any]]:
        require(principal, "users.read")
        with self.engine.connect() as c:
            rows = c.execute(select(db.users.c.id, db.users.c.username, db.users.c.role, db.users.c.organisation,
                                    db.users.c.disabled, db.users.c.totp_confirmed, db.users.c.created_at)
                             .order_by(db.users.c.id))
            return [row_dict(r) for r in rows]

    def set_user_disabled(self, principal: Principal, user_id: int, disabled: bool) -> None:
        require(principal, "users.manage")
        if user_id == principal.user_id and disabled:
            raise Conflict("an admin cannot disable their own account", "user_id")
        self.accounts.set_disabled(user_id, disabled)
        self.audit(principal, "user_disabled" if disabled else "user_enabled", {"user_id": user_id})
