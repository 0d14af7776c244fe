"""ATTACKS on the OpenID Connect sign-in (sampan.web.oidc), against a LOCAL provider (oidc-provider-mock on
127.0.0.1, port 0): a forged state, a replayed callback, login CSRF, an injected code carrying the attacker's
nonce, a subject no admin linked, and an issuer mix-up. Each is refused and leaves no session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("authlib")
pytest.importorskip("oidc_provider_mock")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _oidc_local import (  # noqa: E402
    LocalServer,
    authorize,
    client,
    lying_discovery,
    mock_provider,
    plane,
    signed_in,
    start,
)

from sampan.web.api_auth import SESSION_COOKIE  # noqa: E402
from sampan.web.oidc import CALLBACK_PATH, FLOW_COOKIE  # noqa: E402
from sampan.web.service import ControlPlane  # noqa: E402


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalServer]:
    server = mock_provider()
    yield server
    server.close()


def _linked(tmp_path: Path, issuer: str, username: str = "alice", subject: str = "alice") -> ControlPlane:
    cp = plane(tmp_path)
    user, _ = cp.accounts.create_user(username, "analyst")
    cp.accounts.link_oidc(user.user_id, issuer, subject)
    return cp


def test_wrong_state_is_refused(tmp_path: Path, provider: LocalServer) -> None:
    c = client(_linked(tmp_path, provider.url), provider.url)
    back = authorize(start(c), "alice")
    forged = {**back, "state": back["state"][:-2] + ("AA" if not back["state"].endswith("AA") else "BB")}
    response = c.get(CALLBACK_PATH, params=forged)
    assert response.status_code == 400 and "state" in response.json()["error"]
    assert SESSION_COOKIE not in response.cookies and signed_in(c) is None


def test_replayed_callback_is_refused(tmp_path: Path, provider: LocalServer) -> None:
    c = client(_linked(tmp_path, provider.url), provider.url)
    back = authorize(start(c), "alice")
    flow = c.cookies.get(FLOW_COOKIE)
    assert flow and c.get(CALLBACK_PATH, params=back).status_code == 303
    c.cookies.set(FLOW_COOKIE, flow, path="/auth/oidc")  # the same cookie, code and state again
    replay = c.get(CALLBACK_PATH, params=back)
    assert replay.status_code == 400 and SESSION_COOKIE not in replay.cookies


def test_login_csrf_code_without_the_victims_flow_is_refused(tmp_path: Path, provider: LocalServer) -> None:
    """The attacker completes a sign-in as itself and makes the victim's browser open its callback link."""
    attacker = client(_linked(tmp_path, provider.url, "mallory", "mallory"), provider.url)
    back = authorize(start(attacker), "mallory")
    from fastapi.testclient import TestClient

    victim = TestClient(attacker.app, follow_redirects=False)  # another browser: no flow cookie
    response = victim.get(CALLBACK_PATH, params=back)
    assert response.status_code == 400 and SESSION_COOKIE not in response.cookies


def test_wrong_nonce_is_refused(tmp_path: Path, provider: LocalServer) -> None:
    """A code obtained with the attacker's own nonce is injected into the victim's flow (state matches)."""
    c = client(_linked(tmp_path, provider.url), provider.url)
    params = start(c)
    back = authorize({**params, "nonce": "attacker-chosen-nonce-0123456789"}, "alice")
    assert back["state"] == params["state"]
    response = c.get(CALLBACK_PATH, params=back)
    assert response.status_code == 401 and "nonce" in response.json()["error"]
    assert SESSION_COOKIE not in response.cookies and signed_in(c) is None


def test_unknown_subject_is_refused(tmp_path: Path, provider: LocalServer) -> None:
    from sampan.web.service_base import AUDIT_CHAIN

    cp = _linked(tmp_path, provider.url)
    c = client(cp, provider.url)
    back = authorize(start(c), "eve")  # vouched for by the provider, but linked to no account
    response = c.get(CALLBACK_PATH, params=back)
    assert response.status_code == 401 and "no enabled account" in response.json()["error"]
    assert SESSION_COOKIE not in response.cookies
    refused = [e.detail for e in cp.store.events(AUDIT_CHAIN) if e.kind == "cp.oidc_refused"]
    assert refused and refused[-1]["subject"] == "eve"  # the refusal is in the signed audit log


def test_token_from_another_issuer_is_refused(tmp_path: Path, provider: LocalServer) -> None:
    """Mix-up: the configured issuer's discovery points the flow at another provider, whose ID token names itself
    as issuer; the subject is linked under the configured issuer, to no avail."""
    lying = LocalServer(lying_discovery(provider.url))
    try:
        c = client(_linked(tmp_path, lying.url), lying.url)
        back = authorize(start(c), "alice")
        response = c.get(CALLBACK_PATH, params=back)
        assert response.status_code == 401 and "iss" in response.json()["error"]
        assert SESSION_COOKIE not in response.cookies and signed_in(c) is None
    finally:
        lying.close()
