"""The admin's route that links an account to its OpenID Connect subject: only `users.manage` may use it, every
change is in the signed audit chain, one identity links one account, and the link is what lets the person in."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("authlib")
pytest.importorskip("oidc_provider_mock")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _oidc_local import authorize, client, mock_provider, plane, signed_in, start  # noqa: E402

from sampan.web.oidc import CALLBACK_PATH  # noqa: E402

PASSWORD = "correct horse battery staple"


def test_only_an_admin_links_it_is_audited_and_it_lets_the_person_in(tmp_path: Path) -> None:
    provider = mock_provider()
    try:
        cp = plane(tmp_path)
        admin, _ = cp.accounts.create_user("root", "consortium_admin", password=PASSWORD)
        alice, _ = cp.accounts.create_user("alice", "analyst", password=PASSWORD)
        bob, _ = cp.accounts.create_user("bob", "analyst", password=PASSWORD)
        c = client(cp, provider.url)
        _, admin_token = cp.accounts.issue_token(admin)
        _, alice_token = cp.accounts.issue_token(alice)

        url = f"/api/v1/users/{alice.user_id}/oidc"
        refused = c.put(url, json={"subject": "alice"}, headers={"Authorization": f"Bearer {alice_token}"})
        assert refused.status_code == 403  # an analyst cannot link (here: itself to a subject of its choosing)
        assert c.put(url, json={"subject": "alice"},
                     headers={"Authorization": f"Bearer {admin_token}"}).status_code == 204
        taken = c.put(f"/api/v1/users/{bob.user_id}/oidc", json={"subject": "alice"},
                      headers={"Authorization": f"Bearer {admin_token}"})
        assert taken.status_code == 409  # one identity, one account

        linked = [e.detail for e in cp.store.events("control-plane") if e.kind == "cp.oidc_linked"]
        assert linked == [{"actor": "person:root", "user_id": alice.user_id, "issuer": provider.url,
                           "subject": "alice"}]

        browser = client(cp, provider.url)
        browser.get(CALLBACK_PATH, params=authorize(start(browser), "alice"))
        assert signed_in(browser) == "alice"

        assert c.delete(url, headers={"Authorization": f"Bearer {admin_token}"}).status_code == 204
        assert [e.detail for e in cp.store.events("control-plane") if e.kind == "cp.oidc_unlinked"] == [
            {"actor": "person:root", "user_id": alice.user_id}]
        again = client(cp, provider.url)
        again.get(CALLBACK_PATH, params=authorize(start(again), "alice"))
        assert signed_in(again) is None
    finally:
        provider.close()
