"""R14-ENT-8: every sign-in in progress lives in one process-wide table capped at `_MAX_FLOWS` (10,000), oldest
evicted first, and `GET /auth/oidc/login` needs no authentication. An outsider who requests the login URL
`_MAX_FLOWS` times (no provider round trip: the discovery document is cached) evicts every person's pending flow,
so their callback is refused ("not started here or has expired"); kept up, nobody can sign in with OIDC.
The cap is lowered to 64 here only to keep the test fast; the mechanism is the same at 10,000."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("authlib")
pytest.importorskip("oidc_provider_mock")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _oidc_local import authorize, client, mock_provider, plane, signed_in, start  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from sampan.web import oidc  # noqa: E402
from sampan.web.oidc import CALLBACK_PATH, LOGIN_PATH  # noqa: E402


def test_login_flood_does_not_cancel_a_persons_sign_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oidc, "_MAX_FLOWS", 64)
    provider = mock_provider()
    try:
        cp = plane(tmp_path)
        user, _ = cp.accounts.create_user("alice", "analyst")
        cp.accounts.link_oidc(user.user_id, provider.url, "alice")
        alice = client(cp, provider.url)
        back = authorize(start(alice), "alice")  # alice is at her provider...
        outsider = TestClient(alice.app, follow_redirects=False)
        for _ in range(64):  # ...while an outsider asks for the login URL, no cookie, no credentials
            assert outsider.get(LOGIN_PATH).status_code == 303
        alice.get(CALLBACK_PATH, params=back)
        assert signed_in(alice) == "alice", "alice's sign-in was cancelled by someone else's login requests"
    finally:
        provider.close()
