"""Accounts: argon2id hashes (never the password), rehash on new parameters, lockout, TOTP without replay,
session idle/absolute expiry (injected clock), API tokens stored hashed, with expiry and revocation."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from _web_plane import FAST_ARGON2, World, make_world
from sqlalchemy import select

from sampan.web import db
from sampan.web.auth import Accounts, AuthSettings
from sampan.web.errors import Invalid, Unauthenticated

PASSWORD = "a long password!"


@pytest.fixture()
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def _row(world: World, username: str) -> object:
    with world.plane.engine.connect() as c:
        return c.execute(select(db.users).where(db.users.c.username == username)).first()


def test_passwords_are_argon2id_hashes_never_the_password(world: World) -> None:
    world.user("ana", "analyst")
    row = _row(world, "ana")
    stored = row.password_hash  # type: ignore[attr-defined]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert all(PASSWORD not in str(v) for v in row._mapping.values())  # type: ignore[attr-defined]
    with pytest.raises(Invalid, match="at least 12"):
        world.plane.accounts.create_user("bob", "analyst", password="short")
    principal, one_time = world.plane.accounts.create_user("carol", "auditor")
    assert one_time and len(one_time) >= 20 and _row(world, "carol").must_change_password  # type: ignore[attr-defined]
    assert world.plane.accounts.bootstrap_admin("second-admin") is None  # only while no account exists


def test_a_hash_made_with_old_parameters_is_replaced_at_sign_in(world: World) -> None:
    world.user("ana", "analyst")
    old = _row(world, "ana").password_hash  # type: ignore[attr-defined]
    stronger = Accounts(world.plane.engine, AuthSettings(argon2={**FAST_ARGON2, "time_cost": 2}), world.clock)
    stronger.authenticate("ana", PASSWORD)
    new = _row(world, "ana").password_hash  # type: ignore[attr-defined]
    assert new != old and "t=2" in new and new.startswith("$argon2id$")


def test_wrong_passwords_lock_the_account_for_a_while(world: World) -> None:
    world.user("ana", "analyst")
    accounts = world.plane.accounts
    with pytest.raises(Unauthenticated) as unknown:
        accounts.authenticate("nobody", PASSWORD)
    for _ in range(accounts.settings.max_failures):
        with pytest.raises(Unauthenticated) as wrong:
            accounts.authenticate("ana", "not the password")
    assert str(wrong.value) == str(unknown.value)  # the same answer for an unknown user and a wrong password
    with pytest.raises(Unauthenticated) as locked:
        accounts.authenticate("ana", PASSWORD)  # even the right password, while locked
    assert str(locked.value) == str(unknown.value)  # R14-WEB-14: the lockout does not name real accounts
    world.clock.advance(minutes=6)
    assert accounts.authenticate("ana", PASSWORD).username == "ana"


def test_totp_second_factor_and_no_replay(world: World) -> None:
    ana = world.user("ana", "analyst")
    accounts = world.plane.accounts
    secret, uri = accounts.enrol_totp(ana)
    assert uri.startswith("otpauth://totp/") and "ana" in uri
    totp = pyotp.TOTP(secret)
    with pytest.raises(Invalid):
        accounts.confirm_totp(ana, "000000" if totp.at(world.clock()) != "000000" else "111111")
    accounts.confirm_totp(ana, totp.at(world.clock()))
    with pytest.raises(Unauthenticated, match="wrong user name, password or code"):
        accounts.authenticate("ana", PASSWORD)  # R14-WEB-14: a right password without its code is a failure
    world.clock.advance(seconds=30)
    code = totp.at(world.clock())
    assert accounts.authenticate("ana", PASSWORD, code).username == "ana"
    with pytest.raises(Unauthenticated):
        accounts.authenticate("ana", PASSWORD, code)  # the same code again, same step: replay refused
    world.clock.advance(seconds=30)
    previous_step = totp.at(world.clock() - timedelta(seconds=30))
    with pytest.raises(Unauthenticated):
        accounts.authenticate("ana", PASSWORD, previous_step)  # within the window, but not after the last used
    assert accounts.authenticate("ana", PASSWORD, totp.at(world.clock())).username == "ana"
    world.clock.advance(seconds=30)
    with pytest.raises(Unauthenticated):
        accounts.authenticate("ana", PASSWORD, totp.at(world.clock() - timedelta(seconds=90)))  # too old


def test_sessions_expire_when_idle_and_after_their_absolute_lifetime(world: World) -> None:
    ana = world.user("ana", "analyst")
    accounts = world.plane.accounts
    idle = accounts.create_session(ana)
    with world.plane.engine.connect() as c:
        stored = [r.session_sha256 for r in c.execute(select(db.sessions))]
    assert stored == [hashlib.sha256(idle.session_id.encode()).hexdigest()]  # only the hash is kept
    world.clock.advance(minutes=29)
    assert accounts.session(idle.session_id)[0].username == "ana"  # use refreshes the idle timer
    world.clock.advance(minutes=29)
    principal, csrf = accounts.session(idle.session_id)
    assert csrf == idle.csrf_token
    world.clock.advance(minutes=31)
    with pytest.raises(Unauthenticated, match="expired"):
        accounts.session(idle.session_id)
    with pytest.raises(Unauthenticated):
        accounts.session(idle.session_id)  # gone for good

    busy = accounts.create_session(ana)
    for _ in range(int(accounts.settings.session_absolute / timedelta(minutes=20)) - 1):
        world.clock.advance(minutes=20)
        accounts.session(busy.session_id)
    world.clock.advance(minutes=21)
    with pytest.raises(Unauthenticated, match="expired"):
        accounts.session(busy.session_id)  # active all along, still ends after 12 hours

    ended = accounts.create_session(ana)
    accounts.end_session(ended.session_id)
    with pytest.raises(Unauthenticated):
        accounts.session(ended.session_id)


def test_api_tokens_are_stored_hashed_expire_and_can_be_revoked(world: World) -> None:
    ana = world.user("ana", "analyst")
    accounts = world.plane.accounts
    token_id, token = accounts.issue_token(ana, "ci", timedelta(days=1))
    with world.plane.engine.connect() as c:
        rows = list(c.execute(select(db.api_tokens)))
    assert [r.token_sha256 for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert all(token not in str(v) for r in rows for v in r._mapping.values())
    assert accounts.principal_for_token(token).username == "ana"
    world.clock.advance(days=1, seconds=1)
    with pytest.raises(Unauthenticated):
        accounts.principal_for_token(token)

    _, second = accounts.issue_token(ana, "other")
    client = world.client()
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {second}"}).status_code == 200
    tokens = client.get("/api/v1/me/tokens", headers={"Authorization": f"Bearer {second}"}).json()
    assert {t["label"] for t in tokens} == {"ci", "other"} and all("token" not in t for t in tokens)
    second_id = next(t["id"] for t in tokens if t["label"] == "other")
    assert client.delete(f"/api/v1/me/tokens/{second_id}",
                         headers={"Authorization": f"Bearer {second}"}).status_code == 204
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {second}"}).status_code == 401
    assert token_id != second_id


def test_sign_in_over_http_sets_a_hardened_cookie(world: World) -> None:
    client = world.client()
    answer = client.post("/api/v1/auth/login", json={"username": "admin", "password": world.admin_password})
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert client.get("/api/v1/me").json()["username"] == "admin"
    csrf = answer.json()["csrf_token"]
    assert client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/v1/me").status_code == 401
    assert world.client().post("/api/v1/auth/login", json={"username": "admin",
                                                          "password": "wrong"}).status_code == 401
    failed = [e for e in world.plane.audit_log(world.admin)["entries"] if e["kind"] == "cp.sign_in_failed"]
    assert [e["detail"]["username"] for e in failed] == ["admin"] and "wrong" not in str(failed)



def test_linking_an_identity_drops_an_unchanged_one_time_password(world: World) -> None:
    """R14-WEB-1: an account linked to OpenID Connect before anyone chose its password becomes OIDC-only, so the
    one-time password (perhaps in an e-mail) neither signs in nor leaves the account stuck on 'change it'."""
    accounts = world.plane.accounts
    user, one_time = accounts.create_user("olivia", "analyst")
    assert one_time is not None
    accounts.link_oidc(user.user_id, "https://idp.example", "olivia")
    with pytest.raises(Unauthenticated):
        accounts.authenticate("olivia", one_time)
    assert accounts.principal_for_oidc("https://idp.example", "olivia").must_change_password is False
