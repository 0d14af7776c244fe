"""Portal accounts: applicants register and verify their email; reviewers and admins are made by an admin.

Why these choices (the console's, `sampan.web.auth`, applied to the portal's own tables): passwords are argon2id
hashes (argon2-cffi); the email-verification token and the session id are 256-bit values from `secrets`, stored
only as SHA-256, so a database reader cannot use them; a verification token works once and expires. There is no
mail server in the embedded mode: the verification link is LOGGED (a warning), which is how an operator hands it
on. Sign-in gives ONE answer for an unknown email, a wrong password or a disabled account (the same argon2 work
for unknown emails), so the answers neither enumerate accounts nor confirm passwords; only a right password on an
account whose email is not verified yet is told so. Guessing is slowed per (email, client address), never by
locking the account for its owner (`sampan.web.portal.signin_throttle`, R17-PORTAL-8). Sessions end after
`session_idle` without use and `session_absolute` whatever happens; each has its own CSRF secret.
Registration answers alike whether the email is taken or not (R17-PORTAL-4): for a taken address nothing changes
and its owner gets a notice ("someone tried to register with your address") instead of a link. Verification needs
the link AND the password chosen at registration (R17-PORTAL-5): whoever registers someone else's address cannot
verify it (the link goes to the owner's mailbox), and the owner cannot verify the squatter's password by clicking
the link; a new registration of an address not verified yet replaces the pending one (password, company, links),
so a squatter never blocks the owner. Sign-ins, failed sign-ins, sign-outs and password changes go into the
audit chain (R17-PORTAL-6); a failed sign-in is recorded for a real account only (account, client address; never
the password), so junk addresses, or a password typed into the email field, never reach the signed log.
Threat model: a database reader learns hashes and sealed values only; a guesser is slowed by argon2 and the
throttle; a person with one role cannot raise it (roles live in the database and are read at every request).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine

from sampan.web.auth import MIN_PASSWORD, REFUSED, sha256_hex
from sampan.web.errors import Conflict, Invalid, NotFound, Unauthenticated
from sampan.web.portal import tables as t
from sampan.web.portal.identity import CompanyInfo, PortalPrincipal, normalise_email
from sampan.web.portal.signin_throttle import SignInThrottle

__all__ = ["CompanyInfo", "PortalAccounts", "PortalPrincipal", "AuditHook", "Clock", "ROLES"]

log = logging.getLogger("sampan.portal")

ROLES = t.ROLES
Clock = Callable[[], datetime]
AuditHook = Callable[[str, str, Mapping[str, Any]], None]  # (actor, kind, detail)
Notify = Callable[[str, str], None]  # (email address, message): how a notice reaches an account's owner
_VERIFY_LIFETIME = timedelta(hours=48)
_NOTICE_INTERVAL = timedelta(hours=1)


def _aware(value: datetime) -> datetime:
    """SQLite gives naive datetimes back: they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass
class PortalAccounts:
    """Account operations on the portal's tables; `clock` is injectable so tests can expire things;
    `audit` (actor, kind, detail) receives registrations, verifications, sign-ins and accounts made by an admin;
    `notify` (address, message) mails a notice to an existing account's owner (None: logged when `log_links`)."""

    engine: Engine
    argon2_params: Mapping[str, int] | None = None  # PasswordHasher parameters; None: the library's defaults
    clock: Clock | None = None
    audit: AuditHook | None = None
    log_links: bool = True  # embedded mode: the verification link goes to the log (no mail server)
    session_idle: timedelta = timedelta(minutes=30)
    session_absolute: timedelta = timedelta(hours=12)
    throttle: SignInThrottle = field(default_factory=SignInThrottle)
    notify: Notify | None = None
    _hasher: Any = field(init=False, repr=False)
    _dummy_hash: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from argon2 import PasswordHasher

        t.create_portal_tables(self.engine)
        params: dict[str, Any] = dict(self.argon2_params or {})
        self._hasher = PasswordHasher(**params)
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    def now(self) -> datetime:
        return self.clock() if self.clock is not None else datetime.now(UTC)

    def _audit(self, actor: str, kind: str, detail: Mapping[str, Any]) -> None:
        if self.audit is not None:
            self.audit(actor, kind, detail)

    # --- users ----------------------------------------------------------------------------------
    @staticmethod
    def _principal(row: Any) -> PortalPrincipal:
        return PortalPrincipal(int(row.id), str(row.email), str(row.role), row.company_id,
                               bool(row.must_change_password))

    def _by_email(self, email: str) -> Any:
        with self.engine.connect() as c:
            return c.execute(select(t.users).where(t.users.c.email == email)).first()

    def user(self, user_id: int) -> Any:
        with self.engine.connect() as c:
            row = c.execute(select(t.users).where(t.users.c.id == user_id)).first()
        if row is None:
            raise NotFound(f"no user {user_id}", "user_id")
        return row

    def users(self) -> list[dict[str, Any]]:
        """Every account (no hashes), for the admin page."""
        with self.engine.connect() as c:
            rows = c.execute(select(t.users, t.companies.c.name.label("company"))
                             .outerjoin(t.companies, t.companies.c.id == t.users.c.company_id)
                             .order_by(t.users.c.id)).all()
        return [{"id": int(r.id), "email": r.email, "role": r.role, "company": r.company,
                 "email_verified": r.email_verified_at is not None, "disabled": bool(r.disabled),
                 "locked": r.locked_until is not None and _aware(r.locked_until) > self.now(),
                 "created_at": _aware(r.created_at).isoformat()} for r in rows]

    def company(self, company_id: int | None) -> dict[str, Any] | None:
        if company_id is None:
            return None
        with self.engine.connect() as c:
            row = c.execute(select(t.companies).where(t.companies.c.id == company_id)).first()
        if row is None:
            return None
        return {k: v for k, v in row._mapping.items() if k != "created_at"}

    def _check_password(self, password: str) -> None:
        if len(password or "") < MIN_PASSWORD:
            raise Invalid(f"a password needs at least {MIN_PASSWORD} characters", "password")
        if len(password) > 1024:
            raise Invalid("a password must be at most 1024 characters", "password")

    def register(self, email: str, password: str, company: CompanyInfo) -> str:
        """A new applicant (unverified) and its company; returns the one-time verification token (and, with
        `log_links`, logs the link). Only its SHA-256 is stored.

        An address that already has a verified (or staff, or disabled) account is left as it is: its owner gets a
        notice and "" comes back, while the caller answers as for a new registration (no enumeration). An address
        whose registration is not verified yet is registered anew: password and company replaced, earlier links
        void (a squatter never blocks the address's owner; verification needs this registration's password)."""
        address = normalise_email(email)
        self._check_password(password)
        values = company.checked()
        hashed = self._hasher.hash(password)  # before the branch: the same argon2 work whether the address is taken
        token = secrets.token_urlsafe(32)
        now = self.now()
        with self.engine.begin() as c:
            row = c.execute(select(t.users).where(t.users.c.email == address)).first()
            taken = row is not None and (row.email_verified_at is not None or row.role != "applicant"
                                         or bool(row.disabled))
            if row is not None and taken:
                uid, company_id = int(row.id), row.company_id
            elif row is not None:  # an unverified registration: replaced by this one
                uid, company_id = int(row.id), row.company_id
                if company_id is not None:
                    c.execute(update(t.companies).where(t.companies.c.id == company_id).values(**values))
                else:
                    company_id = _new_id(c.execute(insert(t.companies).values(**values, created_at=now)))
                c.execute(update(t.users).where(t.users.c.id == uid).values(
                    password_hash=hashed, company_id=company_id, created_at=now))
                c.execute(update(t.email_tokens).where(t.email_tokens.c.user_id == uid,
                                                       t.email_tokens.c.purpose == "verify").values(used=True))
            else:
                company_id = _new_id(c.execute(insert(t.companies).values(**values, created_at=now)))
                uid = _new_id(c.execute(insert(t.users).values(
                    email=address, password_hash=hashed, role="applicant", company_id=company_id,
                    must_change_password=False, disabled=False, failed_logins=0, created_at=now)))
            if not taken:
                c.execute(insert(t.email_tokens).values(token_sha256=sha256_hex(token), user_id=uid, purpose="verify",
                                                        expires_at=now + _VERIFY_LIFETIME, used=False, created_at=now))
        if taken:
            if self._notice_due(address, now):  # at most one notice (and audit entry) per address per hour
                self._notice(address, "someone tried to register a new account with this address, which already "
                                      "has one; nothing was changed. Sign in at /portal/sign-in; if it was not you, "
                                      "you can ignore this notice.")
                self._audit("portal:anonymous", "register_existing", {"user_id": uid, "email": address})
            return ""
        if self.log_links:
            log.warning("verification link for %s: /portal/verify?token=%s", address, token)
        self._audit(f"portal:{address}", "register", {"user_id": uid, "email": address, "company": values["name"],
                                                      "company_id": company_id, "replaced": row is not None})
        return token

    def _notice_due(self, address: str, now: datetime) -> bool:
        """Whether this address may get another notice now: registering a taken address over and over must not
        flood its owner's mailbox or the audit log (counted like the portal's rate limits)."""
        from sampan.web.portal.limits import Limit, RateLimited, reserve

        limit = Limit(f"notice:{sha256_hex(address)}", 1, _NOTICE_INTERVAL, "notices", "for this address", "email")
        try:
            with self.engine.begin() as c:
                reserve(c, [limit], now)
        except RateLimited:
            return False
        return True

    def _notice(self, address: str, message: str) -> None:
        """A notice to an account's owner: mailed through `notify`, or logged in the embedded mode."""
        if self.notify is not None:
            self.notify(address, message)
        elif self.log_links:
            log.warning("notice for %s: %s", address, message)

    def verify_email(self, token: str, password: str) -> PortalPrincipal:
        """Mark the account's email verified: needs the link's token (the mailbox) AND the password chosen at this
        registration (the registrant), so neither a squatter nor the mailbox's owner alone verifies the other's
        registration. A wrong password leaves the link usable; the token works once, within its lifetime."""
        digest = sha256_hex(token or "")
        now = self.now()
        with self.engine.connect() as c:
            row = c.execute(select(t.email_tokens, t.users.c.password_hash)
                            .join(t.users, t.users.c.id == t.email_tokens.c.user_id)
                            .where(t.email_tokens.c.token_sha256 == digest,
                                   t.email_tokens.c.purpose == "verify")).first()
        matches = self._verify_hash(row.password_hash if row is not None else None, password)
        if row is None or row.used or _aware(row.expires_at) <= now:
            raise Invalid("this verification link is unknown, used or expired: register again (with the same "
                          "address) to get a new one", "token")
        if not matches:
            raise Unauthenticated("this is not the password chosen when this address was registered. If you did "
                                  "not register it, or registered twice, register again: the newest "
                                  "registration's link and password count", "password")
        with self.engine.begin() as c:
            done = c.execute(update(t.email_tokens).where(t.email_tokens.c.id == row.id,
                                                          t.email_tokens.c.used.is_(False)).values(used=True))
            if done.rowcount != 1:  # a parallel use (or a newer registration) won
                raise Invalid("this verification link was already used", "token")
            c.execute(update(t.users).where(t.users.c.id == row.user_id).values(email_verified_at=now))
        principal = self._principal(self.user(int(row.user_id)))
        self._audit(principal.actor, "email_verified", {"user_id": principal.user_id})
        return principal

    def create_user(self, email: str, role: str, password: str | None = None, *, by: str = "system") -> str:
        """An account made by an admin (verified: the admin vouches for the address). Returns the one-time
        password made when `password` is None (the account must then choose its own), else ""."""
        address = normalise_email(email)
        if role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}", "role")
        one_time = password is None
        password = secrets.token_urlsafe(18) if password is None else password
        self._check_password(password)
        now = self.now()
        with self.engine.begin() as c:
            if c.execute(select(t.users.c.id).where(t.users.c.email == address)).first() is not None:
                raise Conflict(f"an account with the email {address} exists", "email")
            uid = _new_id(c.execute(insert(t.users).values(
                email=address, password_hash=self._hasher.hash(password), role=role, company_id=None,
                email_verified_at=now, must_change_password=one_time, disabled=False, failed_logins=0,
                created_at=now)))
        self._audit(by, "user_created", {"user_id": uid, "email": address, "role": role})
        return password if one_time else ""

    def bootstrap_admin(self, email: str = "admin@portal.localhost") -> str | None:
        """The first admin with a one-time password, only while the portal has no admin (else None)."""
        with self.engine.connect() as c:
            admins = int(c.execute(select(func.count()).select_from(t.users)
                                   .where(t.users.c.role == "admin")).scalar() or 0)
        if admins:
            return None
        return self.create_user(email, "admin")

    def set_disabled(self, user_id: int, disabled: bool, *, by: str = "system") -> None:
        """Disabling also ends every session of the account."""
        self.user(user_id)
        with self.engine.begin() as c:
            c.execute(update(t.users).where(t.users.c.id == user_id).values(disabled=disabled))
            if disabled:
                c.execute(t.sessions.delete().where(t.sessions.c.user_id == user_id))
        self._audit(by, "user_disabled" if disabled else "user_enabled", {"user_id": user_id})

    def set_password(self, principal: PortalPrincipal, old: str, new: str) -> None:
        """Change the password (clears a one-time password's mark), end every session of the account, audit it."""
        row = self.user(principal.user_id)
        if not self._verify_hash(row.password_hash, old):
            self._audit(principal.actor, "password_change_refused", {"user_id": principal.user_id,
                                                                     "reason": "wrong current password"})
            raise Unauthenticated("the current password is wrong", "old_password")
        self._check_password(new)
        if new == old:
            raise Invalid("the new password must differ from the old one", "new_password")
        with self.engine.begin() as c:
            c.execute(update(t.users).where(t.users.c.id == principal.user_id).values(
                password_hash=self._hasher.hash(new), must_change_password=False))
            ended = c.execute(t.sessions.delete().where(t.sessions.c.user_id == principal.user_id)).rowcount
        self._audit(principal.actor, "password_changed", {"user_id": principal.user_id,
                                                          "sessions_ended": int(ended or 0)})

    # --- sign-in -------------------------------------------------------------------------------
    def _verify_hash(self, stored: str | None, password: str) -> bool:
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            return bool(self._hasher.verify(stored or self._dummy_hash, password or "")) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def authenticate(self, email: str, password: str, *, client: str = "") -> PortalPrincipal:
        """The account for a right password; one Unauthenticated answer for every refusal except a right
        password on an unverified email. ``client`` (the caller's address) keys the throttle: RateLimited (429)
        while this client must wait for this email, before any password check."""
        typed = (email or "").strip().lower()[:254]
        now = self.now()
        with self.engine.begin() as c:
            self.throttle.admit(c, typed, client, now)
        row = self._by_email(typed)
        ok = self._verify_hash(row.password_hash if row is not None else None, password)
        refused = Unauthenticated(REFUSED.replace("user name", "email").replace(" or code", ""), "password")
        if row is None or not ok or row.disabled:
            if row is not None:  # only real accounts: junk addresses (or a password typed as one) cannot fill the log
                self._audit("portal:anonymous", "sign_in_failed", {"user_id": int(row.id), "email": str(row.email),
                                                                   "client": client[:100]})
            raise refused
        if row.email_verified_at is None:
            raise Unauthenticated("verify your email address first: follow the link sent when you registered",
                                  "email")
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
        if self._hasher.check_needs_rehash(row.password_hash):
            values["password_hash"] = self._hasher.hash(password)
        with self.engine.begin() as c:
            c.execute(update(t.users).where(t.users.c.id == row.id).values(**values))
            self.throttle.succeeded(c, typed, client)
        principal = self._principal(row)
        self._audit(principal.actor, "signed_in", {"user_id": principal.user_id, "client": client[:100]})
        return principal

    # --- sessions ------------------------------------------------------------------------------
    def new_session(self, principal: PortalPrincipal) -> tuple[str, str]:
        """(session id for the cookie, CSRF secret); only the id's SHA-256 is stored."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.now()
        with self.engine.begin() as c:
            c.execute(insert(t.sessions).values(session_sha256=sha256_hex(session_id), user_id=principal.user_id,
                                                csrf_secret=csrf, expires_at=now + self.session_absolute,
                                                last_seen=now, created_at=now))
        return session_id, csrf

    def session(self, session_id: str) -> PortalPrincipal | None:
        """The session's principal (its idle timer refreshed), or None when unknown, idle, expired or disabled."""
        found = self.session_with_csrf(session_id)
        return found[0] if found is not None else None

    def session_with_csrf(self, session_id: str) -> tuple[PortalPrincipal, str] | None:
        """Like `session`, with the session's CSRF secret (for the pages' form tokens)."""
        if not session_id:
            return None
        now = self.now()
        digest = sha256_hex(session_id)
        with self.engine.begin() as c:
            row = c.execute(select(t.sessions, t.users).join(t.users, t.users.c.id == t.sessions.c.user_id)
                            .where(t.sessions.c.session_sha256 == digest)).first()
            if row is None:
                return None
            idle = now - _aware(row.last_seen) >= self.session_idle
            if row.disabled or _aware(row.expires_at) <= now or idle:
                c.execute(t.sessions.delete().where(t.sessions.c.session_sha256 == digest))
                return None
            c.execute(update(t.sessions).where(t.sessions.c.session_sha256 == digest).values(last_seen=now))
        principal = PortalPrincipal(int(row.user_id), str(row.email), str(row.role), row.company_id,
                                    bool(row.must_change_password))
        return principal, str(row.csrf_secret)

    def end_session(self, session_id: str) -> None:
        """Sign out: the session is deleted; the sign-out is audited under the account's actor."""
        digest = sha256_hex(session_id or "")
        with self.engine.begin() as c:
            row = c.execute(select(t.users.c.id, t.users.c.email).join(t.sessions, t.sessions.c.user_id == t.users.c.id)
                            .where(t.sessions.c.session_sha256 == digest)).first()
            c.execute(t.sessions.delete().where(t.sessions.c.session_sha256 == digest))
        if row is not None:
            self._audit(f"portal:{row.email}", "signed_out", {"user_id": int(row.id)})


def _new_id(result: Any) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the insert returned no primary key")
    return int(key[0])
