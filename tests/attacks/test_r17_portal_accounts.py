"""R17-PORTAL-4..6: account weaknesses of the portal, attacked through `PortalAccounts` and the pages.

- R17-PORTAL-4 (enumeration): the registration page answers 409 "an account with the email X exists: sign in
  instead" for a registered address and the "check your email" page for a new one, so an outsider lists which
  vendors (and which staff addresses) have accounts, although the sign-in form was built to say nothing of that.
  Fixed (PF2): `PortalAccounts.register` answers "" for a taken address and changes nothing; the page renders the
  same "check your email" page; the owner gets a notice (`PortalAccounts.notify`, logged in the embedded mode).
- R17-PORTAL-5 (squatting / pre-registration): an unverified registration holds its email address forever. Mallory
  registers victim@bigbank.example with Mallory's password; the victim's own registration is refused ("exists:
  sign in instead") even after Mallory's link expired (48 h), and there is no password reset. Worse, if the victim
  follows the link mailed for Mallory's registration, the account is verified with MALLORY's password.
  Fixed (PF2): a registration of an address not verified yet replaces the pending one (password, company, earlier
  links void), expired or not; and `verify_email(token, password)` needs the registration's password besides the
  link, so the owner clicking Mallory's link cannot verify Mallory's password (tests/portal/test_portal_accounts.py).
- R17-PORTAL-6 (an action escaping the audit log): a password change (which also ends every session of the account)
  leaves no entry in the portal's signed audit chain; neither do sign-ins, sign-outs and failed sign-ins short of
  a lockout. Fixed (PF2): "portal.password_changed" (actor, user id, sessions ended), "portal.signed_in",
  "portal.signed_out" and "portal.sign_in_failed" (email only when it looks like one, client address) are audited.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "portal"))

from _core_fixtures import FAST_ARGON2, PASSWORD, Clock, applicant, make_portal  # noqa: E402

from sampan.runtime.store import Store  # noqa: E402
from sampan.web.portal import CompanyInfo, PortalAccounts  # noqa: E402

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from sampan.web.portal.app import PortalSettings, create_portal_app  # noqa: E402

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def store(tmp_path) -> Any:
    opened = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    yield opened
    opened.close()


def _register(client: TestClient, email: str) -> Any:
    token = CSRF.search(client.get("/portal/register").text)
    assert token
    return client.post("/portal/register", data={
        "email": email, "password": PASSWORD, "password_again": PASSWORD, "company_name": "Probe Ltd",
        "registration_number": "HRB 1", "country": "DE", "contact_name": "P. Robe", "csrf_token": token.group(1)})


def test_registration_does_not_tell_which_emails_have_accounts(store, tmp_path) -> None:
    portal = make_portal(store, tmp_path / "portal")
    applicant(portal, "cto@vendor.example")
    portal.accounts.create_user("reviewer@portal.example", "reviewer", PASSWORD)
    client = TestClient(create_portal_app(portal, PortalSettings(accounts=portal.accounts)), follow_redirects=False)
    fresh = _register(client, "nobody@elsewhere.example")
    assert fresh.status_code == 200 and 'data-test="registered"' in fresh.text
    for known in ("cto@vendor.example", "reviewer@portal.example"):
        answer = _register(client, known)
        assert (answer.status_code, 'data-test="registered"' in answer.text) == (200, True), answer.status_code
        assert "exists" not in answer.text


def test_an_expired_unverified_registration_does_not_block_the_real_owner(store) -> None:
    clock = Clock()
    accounts = PortalAccounts(store.engine, argon2_params=FAST_ARGON2, clock=clock, log_links=False)
    accounts.register("victim@bigbank.example", "mallory's own passphrase", CompanyInfo("Mallory Ltd", "XX"))
    clock.advance(hours=49)  # Mallory's verification link has expired; nobody can ever verify it
    token = accounts.register("victim@bigbank.example", PASSWORD, CompanyInfo("Big Bank", "DE"))
    accounts.verify_email(token, PASSWORD)
    assert accounts.authenticate("victim@bigbank.example", PASSWORD).email == "victim@bigbank.example"


def test_a_password_change_is_in_the_audit_log(store, tmp_path) -> None:
    portal = make_portal(store, tmp_path / "portal")
    person = applicant(portal, "cto@vendor.example")
    before = len(store.events("portal"))
    portal.accounts.set_password(person, PASSWORD, "a brand new long passphrase")
    added = store.events("portal")[before:]
    assert any("password" in e.kind and person.actor in str(e.detail) for e in added), \
        [e.kind for e in added]
