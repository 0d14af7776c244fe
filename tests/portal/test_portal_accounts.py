"""Portal accounts: registration, email verification, sign-in refusals and throttling, audit, sessions, roles made
by an admin."""

from __future__ import annotations

import logging

import pytest
from _core_fixtures import PASSWORD, Clock, make_portal, staff
from sqlalchemy import select

from sampan.runtime.store import Store
from sampan.web.errors import Forbidden, Invalid, Unauthenticated
from sampan.web.portal import CompanyInfo, PortalAccounts
from sampan.web.portal import tables as t
from sampan.web.portal.limits import RateLimited


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
    principal = portal.accounts.verify_email(token, PASSWORD)
    assert principal.email == "vendor@acme.example" and principal.role == "applicant"
    signed_in = portal.accounts.authenticate("VENDOR@acme.example", PASSWORD)
    assert signed_in.user_id == principal.user_id and signed_in.company_id is not None
    assert portal.accounts.company(signed_in.company_id)["name"] == "Acme FL GmbH"
    with pytest.raises(Invalid, match="used"):  # the token works once
        portal.accounts.verify_email(token, PASSWORD)
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
    portal.accounts.register("A@acme.example", PASSWORD, company)  # not verified yet: replaced, not doubled
    with portal.engine.connect() as c:  # nothing half-written by the refusals
        assert len(c.execute(select(t.users)).all()) == 1
        assert len(c.execute(select(t.companies)).all()) == 1


def test_verification_token_expires(portal, clock) -> None:
    token = portal.accounts.register("late@acme.example", PASSWORD, CompanyInfo("Acme", "DE"))
    clock.advance(hours=49)
    with pytest.raises(Invalid, match="expired"):
        portal.accounts.verify_email(token, PASSWORD)
    with pytest.raises(Invalid):
        portal.accounts.verify_email("made-up-token", PASSWORD)


def test_wrong_password_and_unknown_email_get_one_answer(portal) -> None:
    staff(portal, "reviewer@portal.example", "reviewer")
    with pytest.raises(Unauthenticated) as wrong:
        portal.accounts.authenticate("reviewer@portal.example", "wrong password here")
    with pytest.raises(Unauthenticated) as unknown:
        portal.accounts.authenticate("nobody@portal.example", "wrong password here")
    assert wrong.value.message == unknown.value.message and wrong.value.field == unknown.value.field == "password"


def test_guessing_is_throttled_per_client_and_never_locks_the_owner_out(portal, clock) -> None:
    staff(portal, "victim@portal.example", "reviewer")
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            portal.accounts.authenticate("victim@portal.example", "guess guess guess", client="203.0.113.9")
    with pytest.raises(RateLimited) as slowed:  # the guesser waits, before any password check
        portal.accounts.authenticate("victim@portal.example", PASSWORD, client="203.0.113.9")
    assert slowed.value.status == 429 and slowed.value.field == "password"
    with pytest.raises(RateLimited) as unknown:  # an unknown email is throttled alike: no enumeration
        for _ in range(6):
            try:
                portal.accounts.authenticate("nobody@portal.example", "guess guess guess", client="203.0.113.9")
            except Unauthenticated:
                pass
    assert unknown.value.message == slowed.value.message
    assert portal.accounts.authenticate("victim@portal.example", PASSWORD, client="198.51.100.7").role == "reviewer"
    clock.advance(minutes=1, seconds=1)  # the guesser's wait doubles with every further failure
    with pytest.raises(Unauthenticated):
        portal.accounts.authenticate("victim@portal.example", "guess guess guess", client="203.0.113.9")
    clock.advance(minutes=1, seconds=1)
    with pytest.raises(RateLimited):
        portal.accounts.authenticate("victim@portal.example", "guess guess guess", client="203.0.113.9")
    kinds = [e.kind for e in portal.store.events("portal")]
    assert kinds.count("portal.sign_in_failed") == 6 and "portal.signed_in" in kinds  # unknown emails: not logged


def test_guesses_from_many_addresses_slow_every_new_client_but_not_a_first_try(portal) -> None:
    staff(portal, "victim@portal.example", "reviewer")
    for n in range(20):  # a guesser spread over 20 addresses: the account is now "under attack"
        with pytest.raises(Unauthenticated):
            portal.accounts.authenticate("victim@portal.example", "guess guess guess", client=f"192.0.2.{n}")
    with pytest.raises(Unauthenticated):  # a new address gets one try, then waits
        portal.accounts.authenticate("victim@portal.example", "guess guess guess", client="192.0.2.200")
    with pytest.raises(RateLimited):
        portal.accounts.authenticate("victim@portal.example", "guess guess guess", client="192.0.2.200")
    assert portal.accounts.authenticate("victim@portal.example", PASSWORD, client="198.51.100.7").role == "reviewer"


def test_registering_a_taken_address_changes_nothing_and_notifies_its_owner(portal, caplog) -> None:
    staff(portal, "rev@portal.example", "reviewer")
    with caplog.at_level(logging.WARNING, logger="sampan.portal"):
        for _ in range(3):  # repeated: one notice an hour, not a mailbox (or audit log) flood
            assert portal.accounts.register("rev@portal.example", "mallory's passphrase", CompanyInfo("M", "XX")) == ""
    assert caplog.text.count("notice for rev@portal.example") == 1 and "verification link" not in caplog.text
    assert portal.accounts.authenticate("rev@portal.example", PASSWORD).role == "reviewer"
    with pytest.raises(Unauthenticated):
        portal.accounts.authenticate("rev@portal.example", "mallory's passphrase")
    assert [e.kind for e in portal.store.events("portal")].count("portal.register_existing") == 1


def test_a_squatters_link_does_not_verify_with_the_owners_password(portal) -> None:
    squat = portal.accounts.register("victim@bigbank.example", "mallory's own passphrase", CompanyInfo("M", "XX"))
    with pytest.raises(Unauthenticated):  # the owner follows the link mailed for Mallory's registration
        portal.accounts.verify_email(squat, PASSWORD)
    own = portal.accounts.register("victim@bigbank.example", PASSWORD, CompanyInfo("Big Bank", "DE"))
    with pytest.raises(Invalid):  # Mallory's link (and password) is void once the owner registers anew
        portal.accounts.verify_email(squat, "mallory's own passphrase")
    who = portal.accounts.verify_email(own, PASSWORD)
    assert portal.accounts.company(who.company_id)["name"] == "Big Bank"
    with pytest.raises(Unauthenticated):
        portal.accounts.authenticate("victim@bigbank.example", "mallory's own passphrase")


def test_sign_in_sign_out_and_password_change_are_audited(portal) -> None:
    who = staff(portal, "rev@portal.example", "reviewer")
    sid, _csrf = portal.accounts.new_session(who)
    portal.accounts.end_session(sid)
    with pytest.raises(Unauthenticated):
        portal.accounts.authenticate("rev@portal.example", "correct horse battery stapled", client="192.0.2.1")
    with pytest.raises(Unauthenticated):  # a password typed into the email field stays out of the signed log
        portal.accounts.authenticate("my secret passphrase", "x", client="192.0.2.1")
    with pytest.raises(Unauthenticated):
        portal.accounts.authenticate("nobody@portal.example", "x", client="192.0.2.1")
    portal.accounts.set_password(who, PASSWORD, "a brand new long passphrase")
    events = [(e.kind, dict(e.detail)) for e in portal.store.events("portal")]
    kinds = [k for k, _ in events]
    for kind in ("portal.signed_in", "portal.signed_out", "portal.sign_in_failed", "portal.password_changed"):
        assert kind in kinds, kind
    failed = [d for k, d in events if k == "portal.sign_in_failed"]
    assert len(failed) == 1 and failed[0]["email"] == "rev@portal.example" and failed[0]["client"] == "192.0.2.1"
    assert all("stapled" not in str(d) and "secret" not in str(d) and "nobody" not in str(d) for _, d in events)
    changed = next(d for k, d in events if k == "portal.password_changed")
    assert changed["actor"] == who.actor and changed["user_id"] == who.user_id
    assert portal.store.verify_events("portal")


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
    portal.accounts.verify_email(token, PASSWORD)
    vendor = portal.accounts.authenticate("vendor@acme.example", PASSWORD)
    with pytest.raises(Forbidden):  # an applicant cannot raise itself or read the audit log
        portal.create_user(vendor, "me2@acme.example", "admin")
    with pytest.raises(Forbidden):
        portal.audit_entries(vendor)
    assert {u["role"] for u in portal.users(admin)} == {"admin", "reviewer", "applicant"}


def test_account_events_are_audited(portal) -> None:
    token = portal.accounts.register("vendor@acme.example", PASSWORD, CompanyInfo("Acme", "DE"))
    portal.accounts.verify_email(token, PASSWORD)
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
    assert accounts.verify_email(token, PASSWORD).email == "solo@acme.example"
    store.close()
