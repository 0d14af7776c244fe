"""Roles, the one permission table, and organisation scoping: every endpoint and every console page asks here.

Roles: ``consortium_admin`` runs the consortium (consortia, members, accounts, jobs, starting runs, model stages);
``party_operator`` acts for exactly ONE organisation (its datasets, its approval inbox, its standing rules);
``analyst`` designs and runs jobs and reads results; ``auditor`` reads everything and changes nothing.
Why one table: a permission that lives in one place can be tested exhaustively (tests/test_web_roles.py walks
every route against every role), and the console cannot drift from the API.
Org scoping: an action that names a party (approve, register a dataset, set a rule, read an inbox) is allowed
to an operator only for its own organisation, whatever the permission table says.
"""

from __future__ import annotations

from dataclasses import dataclass

from sampan.web.errors import Forbidden

__all__ = ["ROLES", "PERMISSIONS", "PARTY_SCOPED", "Principal", "allowed", "require", "require_party"]

ADMIN, OPERATOR, ANALYST, AUDITOR = "consortium_admin", "party_operator", "analyst", "auditor"
ROLES = (ADMIN, OPERATOR, ANALYST, AUDITOR)
_ALL = frozenset(ROLES)
_STAFF = frozenset({ADMIN, ANALYST})

PERMISSIONS: dict[str, frozenset[str]] = {
    "self.read": _ALL,  # one's own account, tokens, TOTP enrolment
    "users.manage": frozenset({ADMIN}),
    "users.read": frozenset({ADMIN, AUDITOR}),
    "consortium.create": frozenset({ADMIN}),
    "consortium.read": _ALL,
    "member.invite": frozenset({ADMIN}),
    "parties.read": _ALL,
    "catalogue.read": frozenset({ADMIN, OPERATOR}),
    "dataset.register": frozenset({OPERATOR}),
    "dataset.read": _ALL,
    "budget.read": _ALL,
    "job.create": _STAFF,
    "job.edit": _STAFF,
    "job.read": _ALL,
    "job.start": _STAFF,
    "job.cancel": _STAFF,
    "inbox.read": frozenset({OPERATOR}),
    "approval.decide": frozenset({OPERATOR}),
    "rule.manage": frozenset({OPERATOR}),
    "rule.read": frozenset({OPERATOR, ADMIN, AUDITOR}),
    "run.read": _ALL,
    "report.read": _ALL,
    "model.read": _ALL,
    "model.stage": frozenset({ADMIN}),
    "model.export": frozenset({ADMIN, ANALYST}),
    "audit.read": frozenset({ADMIN, AUDITOR}),
}

# Actions that name a party: an operator may take them only for its own organisation.
PARTY_SCOPED = frozenset({"catalogue.read", "dataset.register", "inbox.read", "approval.decide", "rule.manage",
                          "rule.read", "budget.read"})


@dataclass(frozen=True)
class Principal:
    """Who is acting: an account's id, name, role and (for operators) the one organisation it acts for."""

    user_id: int
    username: str
    role: str
    organisation: str | None = None
    must_change_password: bool = False  # signed in with a one-time password: may only choose its own (R14-WEB-1)

    @property
    def actor(self) -> str:
        """How the audit log and approvals name this person."""
        return f"person:{self.username}"


def allowed(principal: Principal, action: str, party: str | None = None) -> bool:
    """True when the role may take `action` (and, for a party-scoped action, on behalf of `party`)."""
    roles = PERMISSIONS.get(action)
    if roles is None:
        raise KeyError(f"unknown action {action!r}: add it to sampan.web.roles.PERMISSIONS")
    if principal.role not in roles:
        return False
    if principal.role == OPERATOR and action in PARTY_SCOPED:
        return party is not None and principal.organisation is not None and party == principal.organisation
    return True


def require(principal: Principal, action: str, party: str | None = None) -> None:
    """Raise `Forbidden` (403) unless `allowed`; the message names the role and the action, never secrets."""
    if not allowed(principal, action, party):
        whom = f" for party {party!r}" if party is not None and action in PARTY_SCOPED else ""
        raise Forbidden(f"{principal.role} {principal.username!r} may not {action}{whom}")


def require_party(principal: Principal, action: str, party: str) -> None:
    """`require` for an action taken on behalf of `party` (org-scoped for operators)."""
    require(principal, action, party)
