"""R17-PORTAL-8: an outsider keeps any account, the administrator's first, locked out for as long as it likes.

Attack (an outsider over HTTP, no account needed): the lockout counts wrong passwords per ACCOUNT only, from
anywhere, and while an account is locked even the right password is refused. Five wrong guesses every five
minutes (1,440 requests a day) keep a vendor, a reviewer or the administrator out; the embedded portal's
administrator has a fixed, published address (`embedded.ADMIN_EMAIL`, "admin@portal.localhost"), and there is
no password reset or unlock flow other than another admin.

Fixed (PF2): no lockout any more; `sampan.web.portal.signin_throttle.SignInThrottle` counts failures per (email,
client address) with growing waits (the guesser's further tries get 429), and per email from all clients only to
cut every client's free tries to one (slows a spread-out guesser, never refuses a client's first try). Here: five
wrong passwords from 203.0.113.9 do not stop the admin signing in from 127.0.0.1, while the guesser is slowed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "portal"))

from _core_fixtures import PASSWORD, make_portal  # noqa: E402

from sampan.runtime.store import Store  # noqa: E402

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from sampan.web.portal.app import PortalSettings, create_portal_app  # noqa: E402
from sampan.web.portal.embedded import ADMIN_EMAIL  # noqa: E402

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _sign_in(client: TestClient, email: str, password: str) -> int:
    token = CSRF.search(client.get("/portal/sign-in").text)
    assert token
    return client.post("/portal/sign-in", data={"email": email, "password": password, "next": "/projects",
                                                "csrf_token": token.group(1)}).status_code


def test_an_outsiders_guesses_do_not_lock_the_admin_out(tmp_path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    try:
        portal = make_portal(store, tmp_path / "portal")
        portal.accounts.create_user(ADMIN_EMAIL, "admin", PASSWORD)  # the embedded portal's published address
        app = create_portal_app(portal, PortalSettings(accounts=portal.accounts))
        outsider = TestClient(app, follow_redirects=False, client=("203.0.113.9", 40000))
        for guess in range(5):
            assert _sign_in(outsider, ADMIN_EMAIL, f"wrong guess {guess}") == 401
        admin = TestClient(app, follow_redirects=False, client=("127.0.0.1", 40001))
        assert _sign_in(admin, ADMIN_EMAIL, PASSWORD) == 303  # the admin, with the right password, signs in
        assert _sign_in(outsider, ADMIN_EMAIL, PASSWORD) == 429  # the guesser waits, even with the right password
    finally:
        store.close()
