"""Accounts: argon2id password hashes, TOTP second factor, API tokens, browser sessions, sign-in rate limit.

Why these choices: passwords are hashed with argon2-cffi's argon2id at the library's defaults (re-hashed at the
next sign-in when the defaults change), so a stolen database does not give passwords away; API tokens and session
ids are 256-bit values from `secrets`, so one SHA-256 suffices at rest and a database reader cannot use them.
A TOTP code (pyotp, RFC 6238, one step either side) is accepted once (its seed is sealed at rest under a key
kept outside the database, `sampan.web.totp_seal`): its time step is recorded and any code of
that step or an earlier one is refused, so a shoulder-surfed or phished code cannot be replayed. Sessions end
after `idle` without use and after `absolute` whatever happens, each with its own CSRF token (constant-time
compare). After `max_failures` wrong passwords or codes in a row an account is locked for `lockout` (per user,
in the database, counted in SQL so parallel guesses cannot share one count, R14-WEB-8). Unknown users cost the
same argon2 work as known ones, and every refused sign-in (unknown name, wrong password, locked account, a right
password without the code a TOTP account needs, which counts as a failure) gets the same 401 and message, so the
answers neither enumerate accounts nor confirm passwords (R14-WEB-14): the code is asked with the password.
A one-time password marks the principal `must_change_password`; the API and console then refuse everything
but choosing a password, reading /me and signing out (R14-WEB-1). A password change ends the account's other
sessions (R14-WEB-7). Re-enrolling TOTP needs the current password or code, and keeps the confirmed factor
until the new one is confirmed (R14-WEB-5).
Threat model: a database reader learns hashes only; a network attacker without a token or session cookie gets
401; a person with one role cannot raise it (roles live in the database, checked per request in sampan.web.roles).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from sampan.web import db
from sampan.web.errors import Conflict, Invalid, NotFound, Unauthenticated
from sampan.web.roles import ROLES, Principal

__all__ = ["Accounts", "AuthSettings", "Clock", "NewSession", "sha256_hex", "MIN_PASSWORD"]

Clock = Callable[[], datetime]
MIN_PASSWORD = 12
_TOTP_STEP = 30
REFUSED = "wrong user name, password or code"  # the one answer to every refused sign-in (R14-WEB-14)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    """SQLite gives naive datetimes back: they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class AuthSettings:
    session_idle: timedelta = timedelta(minutes=30)
    session_absolute: timedelta = timedelta(hours=12)
    token_lifetime: timedelta = timedelta(days=90)
    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=5)
    argon2: Mapping[str, int] | None = None  # PasswordHasher parameters; None: the library's defaults (production)
    totp_key_file: str | None = None  # the key sealing TOTP seeds at rest; None: beside the store (totp_seal)


@dataclass(frozen=True)
class NewSession:
    """A fresh browser session: the id goes in the cookie (only its hash is stored), the CSRF token in forms."""

    session_id: str
    csrf_token: str
    principal: Principal
    expires_at: datetime


class Accounts:
    """Account operations on the control plane's tables; `clock` is injectable so tests can expire things."""

    def __init__(self, engine: Engine, settings: AuthSettings | None = None, clock: Clock | None = None) -> None:
        from argon2 import PasswordHasher

        self.engine = engine
        self.settings = settings or AuthSettings()
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        params: dict[str, Any] = dict(self.settings.argon2 or {})
        self._hasher = PasswordHasher(**params)
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        from sampan.web.totp_seal import TotpSeal

        self._totp_seal = TotpSeal.for_engine(engine, self.settings.totp_key_file)  # seeds sealed at rest

    # --- users ----------------------------------------------------------------------------------
    @staticmethod
    def _principal(row: Any) -> Principal:
        return Principal(int(row.id), str(row.username), str(row.role), row.organisation,
                         bool(row.must_change_password))

    def _user(self, username: str) -> Any:
        with self.engine.connect() as c:
            return c.execute(select(db.users).where(db.users.c.username == username)).first()

    def user_by_id(self, user_id: int) -> Any:
        with self.engine.connect() as c:
            row = c.execute(select(db.users).where(db.users.c.id == user_id)).first()
        if row is None:
            raise NotFound(f"no user {user_id}", "user_id")
        return row

    def count_users(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(db.users)).scalar() or 0)

    def create_user(self, username: str, role: str, organisation: str | None = None,
                    password: str | None = None, connection: Connection | None = None) -> tuple[Principal, str | None]:
        """A new account; without `password`, a one-time password is made, returned once, and must be changed.
        `connection`: write inside the caller's transaction (an invitation's member row and its operator account
        are one transaction, R14-WEB-9)."""
        username = username.strip()
        if not username or len(username) > 200 or any(ch.isspace() for ch in username):
            raise Invalid("username must be 1-200 characters without spaces", "username")
        if role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}", "role")
        if role == "party_operator" and not organisation:
            raise Invalid("a party_operator acts for one organisation: give it", "organisation")
        one_time = None
        if password is None:
            one_time = password = secrets.token_urlsafe(18)
        self._check_strength(password)
        hashed = self._hasher.hash(password)
        with nullcontext(connection) if connection is not None else self.engine.begin() as c:
            if c.execute(select(db.users.c.id).where(db.users.c.username == username)).first() is not None:
                raise Conflict(f"user {username!r} exists", "username")
            uid = db.new_id(c.execute(insert(db.users).values(
                username=username, role=role, organisation=organisation, password_hash=hashed,
                must_change_password=one_time is not None, created_at=self.clock())))
        return Principal(int(uid), username, role, organisation, one_time is not None), one_time

    def bootstrap_admin(self, username: str = "admin") -> str | None:
        """The first consortium admin with a one-time password, only while no account exists (else None)."""
        if self.count_users():
            return None
        return self.create_user(username, "consortium_admin")[1]

    def _check_strength(self, password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise Invalid(f"a password needs at least {MIN_PASSWORD} characters", "password")

    def set_password(self, principal: Principal, old: str, new: str, keep_session: str | None = None) -> int:
        """Change the password and end every OTHER session of the account (an intruder's too): the number ended.
        `keep_session`: the session id the change was made from (it stays signed in)."""
        row = self.user_by_id(principal.user_id)
        if not self._verify_hash(row.password_hash, old):
            raise Unauthenticated("the current password is wrong", "old_password")
        self._check_strength(new)
        if new == old:
            raise Invalid("the new password must differ from the old one", "new_password")
        others = db.sessions.c.user_id == principal.user_id
        if keep_session:
            others = others & (db.sessions.c.session_sha256 != sha256_hex(keep_session))
        with self.engine.begin() as c:
            c.execute(update(db.users).where(db.users.c.id == principal.user_id).values(
                password_hash=self._hasher.hash(new), must_change_password=False))
            ended = c.execute(db.sessions.delete().where(others))
        return int(ended.rowcount or 0)

    def set_disabled(self, user_id: int, disabled: bool) -> None:
        """Disabling also ends every session and revokes every token of the account."""
        self.user_by_id(user_id)
        with self.engine.begin() as c:
            c.execute(update(db.users).where(db.users.c.id == user_id).values(disabled=disabled))
            if disabled:
                c.execute(db.sessions.delete().where(db.sessions.c.user_id == user_id))
                c.execute(update(db.api_tokens).where(db.api_tokens.c.user_id == user_id).values(revoked=True))

    def link_oidc(self, user_id: int, issuer: str, subject: str) -> None:
        """Link the account to an OpenID Connect identity. A one-time password nobody has changed yet is dropped
        (the account becomes OIDC-only): the identity provider signs it in, and a one-time password left usable
        would be the leaked-credential hole R14-WEB-1 closes."""
        row = self.user_by_id(user_id)
        values: dict[str, Any] = {"oidc_issuer": issuer, "oidc_subject": subject}
        if row.must_change_password:
            values.update(password_hash=None, must_change_password=False)
        with self.engine.begin() as c:
            c.execute(update(db.users).where(db.users.c.id == user_id).values(**values))

    def principal_for_oidc(self, issuer: str, subject: str) -> Principal:
        """The enabled account an admin linked to (issuer, subject); 401 otherwise (for the OIDC sign-in)."""
        with self.engine.connect() as c:
            row = c.execute(select(db.users).where(db.users.c.oidc_issuer == issuer,
                                                   db.users.c.oidc_subject == subject)).first()
        if row is None or row.disabled:
            raise Unauthenticated("no enabled account is linked to this OpenID Connect identity")
        return self._principal(row)

    # --- passwords, rate limit, TOTP ---------------------------------------------------------------
    def _verify_hash(self, stored: str | None, password: str) -> bool:
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            return bool(self._hasher.verify(stored or self._dummy_hash, password)) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def authenticate(self, username: str, password: str, totp_code: str | None = None) -> Principal:
        """Check password (and TOTP when enrolled, given in the same call); ONE 401 answer for every failure
        reason: unknown, locked, disabled, wrong password, missing or wrong code (R14-WEB-14)."""
        row = self._user(username)
        now = self.clock()
        ok = self._verify_hash(row.password_hash if row is not None else None, password)
        refused = Unauthenticated(REFUSED, "password")
        if row is None:
            raise refused
        if row.locked_until is not None and _aware(row.locked_until) > now:
            raise refused  # the lockout must not tell real accounts from unknown names
        if ok and row.totp_confirmed:  # a right password without its code is a failed attempt like any other
            ok = bool(totp_code) and self._accept_totp(row, str(totp_code))
        if not ok or row.disabled:
            self._failure(row, now)
            raise refused
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
        if self._hasher.check_needs_rehash(row.password_hash):
            values["password_hash"] = self._hasher.hash(password)
        with self.engine.begin() as c:
            c.execute(update(db.users).where(db.users.c.id == row.id).values(**values))
        return self._principal(row)

    def _failure(self, row: Any, now: datetime) -> None:
        """Count in SQL, in one transaction (R14-WEB-8): parallel guesses each add one, none overwrites another."""
        with self.engine.begin() as c:
            c.execute(update(db.users).where(db.users.c.id == row.id).values(
                failed_logins=db.users.c.failed_logins + 1))
            failures = int(c.execute(select(db.users.c.failed_logins).where(db.users.c.id == row.id)).scalar() or 0)
            if failures >= self.settings.max_failures:
                c.execute(update(db.users).where(db.users.c.id == row.id).values(
                    failed_logins=0, locked_until=now + self.settings.lockout))

    def enrol_totp(self, principal: Principal, issuer: str = "Sampan", proof: str | None = None) -> tuple[str, str]:
        """A new TOTP secret (pending) and its provisioning URI for an authenticator app. When the account already
        has a confirmed factor, `proof` (its current password or code) is required and the confirmed factor stays
        in force until `confirm_totp` proves the new one (R14-WEB-5): a stolen token or session cannot switch the
        second factor off or swap it for the intruder's."""
        import pyotp

        row = self.user_by_id(principal.user_id)
        if row.totp_confirmed:
            proven = proof is not None and (self._verify_hash(row.password_hash, proof)
                                            or self._accept_totp(row, proof.strip().replace(" ", "")))
            if not proven:
                raise Unauthenticated("replacing the authenticator needs your current password or code", "proof")
        secret = pyotp.random_base32()
        with self.engine.begin() as c:
            c.execute(update(db.users).where(db.users.c.id == principal.user_id).values(
                totp_pending=self._totp_seal.seal(principal.user_id, secret)))
        return secret, pyotp.TOTP(secret).provisioning_uri(name=principal.username, issuer_name=issuer)

    def confirm_totp(self, principal: Principal, code: str) -> None:
        """Turn the pending second factor on (replacing any older one) once the user proves the app's codes."""
        row = self.user_by_id(principal.user_id)
        if not row.totp_pending:
            raise Conflict("enrol first: no new TOTP secret for this account", "totp")
        if not self._accept_totp(row, code, row.totp_pending):
            raise Invalid("the code does not match", "code")
        with self.engine.begin() as c:
            c.execute(update(db.users).where(db.users.c.id == row.id).values(
                totp_secret=row.totp_pending, totp_pending=None, totp_confirmed=True))

    def _accept_totp(self, row: Any, code: str, sealed: str | None = None) -> bool:
        """Valid within one step either side, and of a later step than the last accepted code (no replay).
        `sealed`: the seed to check against (default: the confirmed one)."""
        import pyotp

        from sampan.web.totp_seal import SealError

        sealed = sealed if sealed is not None else row.totp_secret
        if not sealed or not code.isdigit():
            return False
        try:
            totp = pyotp.TOTP(self._totp_seal.open(int(row.id), str(sealed)))
        except SealError as exc:
            raise Unauthenticated(f"{exc}: an admin must reset this account's second factor", "totp") from None
        current = int(self.clock().timestamp()) // _TOTP_STEP
        last = row.totp_last_step if row.totp_last_step is not None else -1
        matched = None
        for step in (current - 1, current, current + 1):
            if hmac.compare_digest(totp.generate_otp(step), code) and step > last:
                matched = step
        if matched is None:
            return False
        with self.engine.begin() as c:  # only a strictly later step may move the mark: two racing uses, one wins
            done = c.execute(update(db.users).where(
                db.users.c.id == row.id,
                (db.users.c.totp_last_step.is_(None)) | (db.users.c.totp_last_step < matched)).values(
                totp_last_step=matched))
        return bool(done.rowcount == 1)

    # --- API tokens ------------------------------------------------------------------------------
    def issue_token(self, principal: Principal, label: str = "", lifetime: timedelta | None = None) -> tuple[int, str]:
        """A new bearer token for the account (shown once); only its SHA-256 is stored."""
        token = "sp_" + secrets.token_urlsafe(32)
        expires = self.clock() + (lifetime or self.settings.token_lifetime)
        with self.engine.begin() as c:
            tid = db.new_id(c.execute(insert(db.api_tokens).values(
                token_sha256=sha256_hex(token), user_id=principal.user_id, label=label[:200], expires_at=expires,
                revoked=False, created_at=self.clock())))
        return int(tid), token

    def tokens(self, principal: Principal) -> list[Any]:
        with self.engine.connect() as c:
            return list(c.execute(select(db.api_tokens).where(db.api_tokens.c.user_id == principal.user_id)
                                  .order_by(db.api_tokens.c.id)))

    def revoke_token(self, principal: Principal, token_id: int) -> None:
        """Revoke one of the caller's own tokens (an admin revokes others' by disabling the account)."""
        with self.engine.begin() as c:
            done = c.execute(update(db.api_tokens).where(db.api_tokens.c.id == token_id,
                                                         db.api_tokens.c.user_id == principal.user_id)
                             .values(revoked=True))
        if done.rowcount != 1:
            raise NotFound(f"no token {token_id} of yours", "token_id")

    def principal_for_token(self, token: str) -> Principal:
        with self.engine.connect() as c:
            row = c.execute(select(db.api_tokens, db.users).join(db.users, db.users.c.id == db.api_tokens.c.user_id)
                            .where(db.api_tokens.c.token_sha256 == sha256_hex(token))).first()
        if row is None or row.revoked or row.disabled or _aware(row.expires_at) <= self.clock():
            raise Unauthenticated("the API token is unknown, expired or revoked")
        return Principal(int(row.user_id), str(row.username), str(row.role), row.organisation,
                         bool(row.must_change_password))

    # --- browser sessions ------------------------------------------------------------------------
    def create_session(self, principal: Principal) -> NewSession:
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + self.settings.session_absolute
        with self.engine.begin() as c:
            c.execute(insert(db.sessions).values(session_sha256=sha256_hex(session_id), user_id=principal.user_id,
                                                 csrf_token=csrf, expires_at=expires, last_seen=now, created_at=now))
        return NewSession(session_id, csrf, principal, expires)

    def session(self, session_id: str) -> tuple[Principal, str]:
        """The session's principal and CSRF token; refreshes its idle timer; 401 when expired, idle or ended."""
        now = self.clock()
        digest = sha256_hex(session_id)
        with self.engine.begin() as c:
            row = c.execute(select(db.sessions, db.users).join(db.users, db.users.c.id == db.sessions.c.user_id)
                            .where(db.sessions.c.session_sha256 == digest)).first()
            if row is None:
                raise Unauthenticated("no such session: sign in")
            idle = now - _aware(row.last_seen) >= self.settings.session_idle
            if row.disabled or _aware(row.expires_at) <= now or idle:
                c.execute(db.sessions.delete().where(db.sessions.c.session_sha256 == digest))
                raise Unauthenticated("the session has expired: sign in again")
            c.execute(update(db.sessions).where(db.sessions.c.session_sha256 == digest).values(last_seen=now))
        return (Principal(int(row.user_id), str(row.username), str(row.role), row.organisation,
                          bool(row.must_change_password)), str(row.csrf_token))

    def end_session(self, session_id: str) -> None:
        with self.engine.begin() as c:
            c.execute(db.sessions.delete().where(db.sessions.c.session_sha256 == sha256_hex(session_id)))

    @staticmethod
    def csrf_ok(expected: str, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(expected.encode(), presented.encode())
