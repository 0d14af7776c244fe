"""Portal accounts: registration, email verification, sign-in refusals, lockout, sessions, roles made by an admin."""

from __future__ import annotations

import logging

import pytest
from _core_fixtures import PASSWORD, Clock, make_portal, staff
from sqlalchemy import select

from sampan.runtime.store import Store
from sampan.web.errors import Conflict, Forbidden, Invalid, Unauthenticated
from sampan.web.portal import CompanyInfo, PortalAccounts
from sampan.web.portal import tables as t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def portal(request, tmp_path, clock):
    """A portal on SQLite and on the local PostgreSQL server (counting failures in SQL must hold on both)."""
    url = f"sqlite:///{tmp_path / 'runs.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = Store.open(url)
    yield make_portal(store, tmp_path / "portal", clock=clock)
    store.close()


def test_register_verify_sign_in(portal, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="sampan.portal"):
        token = portal.accounts.register(" Vendor@Acme.Example ", PASSWORD,
                                         CompanyInfo("Acme FL GmbH", "DE", registration_number="HRB 123",
                                                     contact_email="ops@acme.example", website="https://acme.example"))
    assert f"/portal/verify?token={token}" in caplog.text  # the embedded mode logs the link
    with pytest.raises(Unauthenticated) as unverified:
        portal.accounts.authenticate("vendor@acme.example", PASSWORD)
    assert unverified.value.field == "email" and "verify" in unverified.value.message
    principal = portal.accounts.verify_email(token)
    assert principal.email == "vendor@acme.example" and principal.role == "applicant"
    signed_in = portal.accounts.authenticate("VENDOR@acme.example", PASSWORD)
    assert signed_in.user_id == principal.user_id and signed_in.company_id is not None
    assert portal.accounts.company(signed_in.company_id)["name"] == "Acme FL GmbH"
    with pytest.raises(Invalid, match="used"):  # the token works once
        portal.accounts.verify_email(token)
    with portal.engine.connect() as c:  # at rest: an argon2id hash and a SHA-256, never the secrets
        user = c.execute(select(t.users)).one()
        stored = c.execute(select(t.email_tokens.c.token_sha256)).scalar()
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    assert stored != token and len(stored) == 64


def test_registration_refuses_bad_input(portal) -> None:
    company = CompanyInfo("Acme", "DE")
    with pytest.raises(Invalid) as bad_email:
        portal.accounts.register("not-an-email", PASSWORD, company)
    assert bad_email.value.field == "email"
    with pytest.raises(Invalid) as short:
        portal.accounts.register("a@acme.example", "short", company)
    assert short.value.field == "password"
    with pytest.raises(Invalid) as no_name:
        portal.accounts.register("a@acme.example", PASSWORD, CompanyInfo(" ", "DE"))
    assert no_name.value.field == "company.name"
    with pytest.raises(Invalid) as site:
        portal.accounts.register("a@acme.example", PASSWORD, CompanyInfo("Acme", "DE", website="javascript:x"))
    assert site.value.field == "company.website"
    portal.accounts.register("a@acme.example", PASSWORD, company)
    with pytest.raises(Conflict):
        portal.accounts.register("A@acme.example", PASSWORD, company)
    with portal.engine.connect() as c:  # nothing half-written by the refusals
        assert len(c.execute(select(t.users)).all()) == 1
        assert len(c.execute(select(t.companies)).all()) == 1


def test_verification_token_expires(portal, clock) -> None:
    token = portal.accounts.register("late@acme.example", PASSWORD, CompanyInfo("Acme", "DE"))
    clock.advance(hours=49)
    with pytest.raises(Invalid, match="expired"):
        portal.accounts.verify_email(token)
    with pytest.raises(Invalid):
        portal.accounts.verify_email("made-up-token")


def test_wrong_password_and_unknown_email_get_one_answer(portal) -> None:
    staff(portal, "reviewer@portal.example", "reviewer")
    with pytest.raises(Unauthenticated) as wrong:
        portal.accounts.authenticate("reviewer@portal.example", "wrong password here")
    with pytest.raises(Unauthenticated) as unknown:
        portal.accounts.authenticate("nobody@portal.example", "wrong password here")
    assert wrong.value.message == unknown.value.message and wrong.value.field == unknown.value.field == "password"


def test_lockout_after_five_failures_then_expires(portal, clock) -> None:
    staff(portal, "victim@portal.example", "reviewer")
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            portal.accounts.authenticate("victim@portal.example", "guess guess guess")
    with pytest.raises(Unauthenticated) as locked:  # the right password is refused while locked, same answer
        portal.accounts.authenticate("victim@portal.example", PASSWORD)
    assert locked.value.field == "password"
    assert next(u for u in portal.accounts.users() if u["email"] == "victim@portal.example")["locked"]
    clock.advance(minutes=6)
    assert portal.accounts.authenticate("victim@portal.example", PASSWORD).role == "reviewer"
    kinds = [e.kind for e in portal.store.events("portal")]
    assert "portal.account_locked" in kinds


def test_disabled_account_refused_and_sessions_ended(portal) -> None:
    admin = staff(portal, "admin@portal.example", "admin")
    other = staff(portal, "rev@portal.example", "reviewer")
    sid, _csrf = portal.accounts.new_session(other)
    portal.set_disabled(admin, other.user_id, True)
    assert portal.accounts.session(sid) is None
    with pytest.raises(Unauthenticated):
        portal.accounts.authenticate("rev@portal.example", PASSWORD)
    with pytest.raises(Invalid):
        portal.set_disabled(admin, admin.user_id, True)


def test_sessions_idle_and_absolute_expiry(portal, clock) -> None:
    who = staff(portal, "rev@portal.example", "reviewer")
    sid, csrf = portal.accounts.new_session(who)
    found = portal.accounts.session_with_csrf(sid)
    assert found is not None and found[0] == who and found[1] == csrf
    clock.advance(minutes=29)
    assert portal.accounts.session(sid) == who  # used: the idle timer restarts
    clock.advance(minutes=31)
    assert portal.accounts.session(sid) is None  # idle too long
    sid2, _ = portal.accounts.new_session(who)
    for _ in range(25):  # kept busy, it still ends after 12 hours
        clock.advance(minutes=29)
        portal.accounts.session(sid2)
    assert portal.accounts.session(sid2) is None
    sid3, _ = portal.accounts.new_session(who)
    portal.accounts.end_session(sid3)
    assert portal.accounts.session(sid3) is None
    assert portal.accounts.session("forged") is None and portal.accounts.session("") is None


def test_roles_and_admin_only_account_management(portal) -> None:
    assert portal.accounts.bootstrap_admin() is not None
    assert portal.accounts.bootstrap_admin() is None  # only while no admin exists
    admin = staff(portal, "boss@portal.example", "admin")
    one_time = portal.create_user(admin, "rev@portal.example", "reviewer")
    reviewer = portal.accounts.authenticate("rev@portal.example", one_time)
    assert reviewer.role == "reviewer" and reviewer.must_change_password
    portal.accounts.set_password(reviewer, one_time, "a new long password 123")
    assert not portal.accounts.authenticate("rev@portal.example", "a new long password 123").must_change_password
    with pytest.raises(Invalid) as bad_role:
        portal.create_user(admin, "x@portal.example", "superuser")
    assert bad_role.value.field == "role"
    for who in (reviewer,):
        with pytest.raises(Forbidden):
            portal.create_user(who, "y@portal.example", "admin")
        with pytest.raises(Forbidden):
            portal.users(who)
        with pytest.raises(Forbidden):
            portal.set_disabled(who, admin.user_id, True)
    token = portal.accounts.register("vendor@acme.example", PASSWORD, CompanyInfo("Acme", "DE"))
    portal.accounts.verify_email(token)
    vendor = portal.accounts.authenticate("vendor@acme.example", PASSWORD)
    with pytest.raises(Forbidden):  # an applicant cannot raise itself or read the audit log
        portal.create_user(vendor, "me2@acme.example", "admin")
    with pytest.raises(Forbidden):
        portal.audit_entries(vendor)
    assert {u["role"] for u in portal.users(admin)} == {"admin", "reviewer", "applicant"}


def test_account_events_are_audited(portal) -> None:
    token = portal.accounts.register("vendor@acme.example", PASSWORD, CompanyInfo("Acme", "DE"))
    portal.accounts.verify_email(token)
    events = portal.store.events("portal")
    assert [e.kind for e in events] == ["portal.register", "portal.email_verified"]
    assert events[0].detail["actor"] == "portal:vendor@acme.example"
    assert all(token not in str(e.detail) for e in events)
    assert portal.store.verify_events("portal")


def test_accounts_alone_create_their_tables(tmp_path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'alone.db'}")
    accounts = PortalAccounts(store.engine, argon2_params={"time_cost": 1, "memory_cost": 1024, "parallelism": 1},
                              log_links=False)
    token = accounts.register("solo@acme.example", PASSWORD, CompanyInfo("Solo", "FR"))
    assert accounts.verify_email(token).email == "solo@acme.example"
    store.close()
