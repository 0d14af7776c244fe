"""OpenID Connect sign-in against a LOCAL provider (oidc-provider-mock on 127.0.0.1, port 0): a linked subject
gets the same session a password sign-in gets; a wrong state, a wrong nonce, an unlinked subject and a token
from another issuer are refused and leave no session."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

pytest.importorskip("authlib")
oidc_provider_mock = pytest.importorskip("oidc_provider_mock")

from werkzeug.serving import make_server  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

from sampan.runtime.store import Store  # noqa: E402
from sampan.web.api_auth import SESSION_COOKIE  # noqa: E402
from sampan.web.app import AppSettings, create_app  # noqa: E402
from sampan.web.auth import Accounts, AuthSettings  # noqa: E402
from sampan.web.fake_gateway import FakeGateway  # noqa: E402
from sampan.web.oidc import CALLBACK_PATH, FLOW_COOKIE, LOGIN_PATH, OidcSection, OidcSettings  # noqa: E402
from sampan.web.service import ControlPlane  # noqa: E402

REDIRECT = "http://127.0.0.1:8443" + CALLBACK_PATH


class _Server:
    """A WSGI app on 127.0.0.1, port 0, served by werkzeug in a thread."""

    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.fixture(scope="module")
def provider() -> Iterator[_Server]:
    server = _Server(oidc_provider_mock.app(require_nonce=True))
    yield server
    server.close()


@pytest.fixture(scope="module")
def other_provider() -> Iterator[_Server]:
    server = _Server(oidc_provider_mock.app(require_nonce=True))
    yield server
    server.close()


def _plane(tmp_path: Path) -> ControlPlane:
    store = Store.open(f"sqlite:///{tmp_path / 'control.db'}", audit_key=tmp_path / "audit.pem")
    accounts = Accounts(store.engine, AuthSettings(argon2={"time_cost": 1, "memory_cost": 1024, "parallelism": 1}))
    return ControlPlane(store, FakeGateway(store, tmp_path / "agents"), accounts)


def _client(plane: ControlPlane, issuer: str) -> TestClient:
    settings = OidcSettings(issuer, "sampan-console", "client-secret-for-tests", REDIRECT)
    app = create_app(plane, AppSettings(secure_cookies=False, console=False, oidc=settings))
    return TestClient(app, follow_redirects=False)


def _start(client: TestClient) -> dict[str, str]:
    """Our login step: the redirect to the provider, as parsed query parameters."""
    response = client.get(LOGIN_PATH, params={"next": "/console/jobs"})
    assert response.status_code == 303, response.text
    assert FLOW_COOKIE in response.cookies
    location = response.headers["location"]
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert params["code_challenge_method"] == "S256" and params["code_challenge"] and params["nonce"]
    assert params["redirect_uri"] == REDIRECT and params["state"]
    params["_endpoint"] = location.split("?", 1)[0]
    return params


def _authorize(params: dict[str, str], subject: str) -> dict[str, str]:
    """The person signs in at the provider as `subject`; the provider's redirect back, as query parameters."""
    endpoint = params["_endpoint"]
    query = {k: v for k, v in params.items() if k != "_endpoint"}
    response = httpx.post(endpoint, params=query, data={"sub": subject}, follow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _signed_in(client: TestClient) -> str | None:
    me = client.get("/api/v1/me")
    return me.json()["username"] if me.status_code == 200 else None


def test_linked_subject_signs_in_with_a_normal_session(tmp_path: Path, provider: _Server) -> None:
    plane = _plane(tmp_path)
    alice, _ = plane.accounts.create_user("alice", "party_operator", "bank_a")
    plane.accounts.link_oidc(alice.user_id, provider.url, "alice@bank-a.hk")
    client = _client(plane, provider.url)
    back = _authorize(_start(client), "alice@bank-a.hk")
    response = client.get(CALLBACK_PATH, params=back)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console/jobs"
    cookie = response.cookies.get(SESSION_COOKIE)
    assert cookie
    principal, _ = plane.accounts.session(cookie)  # the same kind of session a password sign-in makes
    assert (principal.username, principal.role, principal.organisation) == ("alice", "party_operator", "bank_a")
    assert _signed_in(client) == "alice"
    replay = client.get(CALLBACK_PATH, params=back)  # the flow is single-use: a replayed callback is refused
    assert replay.status_code == 400


def test_wrong_state_is_refused(tmp_path: Path, provider: _Server) -> None:
    plane = _plane(tmp_path)
    alice, _ = plane.accounts.create_user("alice", "analyst")
    plane.accounts.link_oidc(alice.user_id, provider.url, "alice")
    client = _client(plane, provider.url)
    back = _authorize(_start(client), "alice")
    forged = {**back, "state": back["state"][:-2] + ("AA" if not back["state"].endswith("AA") else "BB")}
    response = client.get(CALLBACK_PATH, params=forged)
    assert response.status_code == 400 and "state" in response.json()["error"]
    assert SESSION_COOKIE not in response.cookies and _signed_in(client) is None


def test_login_csrf_code_without_the_victims_flow_is_refused(tmp_path: Path, provider: _Server) -> None:
    """ATTACK: the attacker completes a sign-in as itself and sends the victim its callback link."""
    plane = _plane(tmp_path)
    mallory, _ = plane.accounts.create_user("mallory", "analyst")
    plane.accounts.link_oidc(mallory.user_id, provider.url, "mallory")
    attacker = _client(plane, provider.url)
    back = _authorize(_start(attacker), "mallory")
    victim = TestClient(attacker.app, follow_redirects=False)  # another browser: no flow cookie
    response = victim.get(CALLBACK_PATH, params=back)
    assert response.status_code == 400 and SESSION_COOKIE not in response.cookies


def test_wrong_nonce_is_refused(tmp_path: Path, provider: _Server) -> None:
    """ATTACK: a code obtained with the attacker's own nonce is injected into the victim's flow (state matches)."""
    plane = _plane(tmp_path)
    alice, _ = plane.accounts.create_user("alice", "analyst")
    plane.accounts.link_oidc(alice.user_id, provider.url, "alice")
    client = _client(plane, provider.url)
    params = _start(client)
    back = _authorize({**params, "nonce": "attacker-chosen-nonce-0123456789"}, "alice")
    assert back["state"] == params["state"]
    response = client.get(CALLBACK_PATH, params=back)
    assert response.status_code == 401 and "nonce" in response.json()["error"]
    assert SESSION_COOKIE not in response.cookies and _signed_in(client) is None


def test_unknown_subject_is_refused(tmp_path: Path, provider: _Server) -> None:
    plane = _plane(tmp_path)
    alice, _ = plane.accounts.create_user("alice", "consortium_admin")
    plane.accounts.link_oidc(alice.user_id, provider.url, "alice")
    client = _client(plane, provider.url)
    back = _authorize(_start(client), "eve")  # vouched for by the provider, but linked to no account
    response = client.get(CALLBACK_PATH, params=back)
    assert response.status_code == 401 and "no enabled account" in response.json()["error"]
    assert SESSION_COOKIE not in response.cookies
    from sampan.web.service_base import AUDIT_CHAIN

    refused = [e.detail for e in plane.store.events(AUDIT_CHAIN) if e.kind == "cp.oidc_refused"]
    assert refused and refused[-1]["subject"] == "eve"  # the refusal is in the signed audit log


def test_token_from_another_issuer_is_refused(tmp_path: Path, provider: _Server, other_provider: _Server) -> None:
    """ATTACK (mix-up): the configured issuer's discovery points the flow at another provider, whose ID token
    names itself as issuer; the subject is even linked under that other issuer's name, to no avail."""
    lying = _Server(_lying_discovery(provider.url, other_provider.url))
    try:
        plane = _plane(tmp_path)
        alice, _ = plane.accounts.create_user("alice", "analyst")
        plane.accounts.link_oidc(alice.user_id, lying.url, "alice")
        client = _client(plane, lying.url)
        back = _authorize(_start(client), "alice")
        response = client.get(CALLBACK_PATH, params=back)
        assert response.status_code == 401 and "iss" in response.json()["error"]
        assert SESSION_COOKIE not in response.cookies and _signed_in(client) is None
    finally:
        lying.close()


def _lying_discovery(_: str, real: str, issuer: str | None = None) -> Any:
    """A discovery document that claims its own URL (or `issuer`) as issuer but sends every request to `real`."""
    import json

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        here = issuer or f"http://{environ['HTTP_HOST']}"
        if environ["PATH_INFO"] != "/.well-known/openid-configuration":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        body = json.dumps({"issuer": here, "authorization_endpoint": f"{real}/oauth2/authorize",
                           "token_endpoint": f"{real}/oauth2/token", "jwks_uri": f"{real}/jwks",
                           "id_token_signing_alg_values_supported": ["RS256"]}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    return app


def test_discovery_must_name_the_configured_issuer(tmp_path: Path, provider: _Server) -> None:
    lying = _Server(_lying_discovery("", provider.url, issuer="https://login.elsewhere.example"))
    try:
        client = _client(_plane(tmp_path), lying.url)
        response = client.get(LOGIN_PATH)
        assert response.status_code == 401 and "names issuer" in response.json()["error"]
    finally:
        lying.close()


def test_settings_keep_the_secret_out_of_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from sampan.errors import ConfigError

    base = {"issuer": "https://login.bank-a.hk", "client_id": "sampan", "redirect_uri": "https://cp.example" +
            CALLBACK_PATH}
    with pytest.raises(ValidationError):
        OidcSection.model_validate({**base, "client_secret": "s3cret"})
    secret = tmp_path / "oidc-secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match="client_secret_file"):
        OidcSettings.from_section(OidcSection.model_validate({**base, "client_secret_file": str(secret)}))
    secret.chmod(0o600)
    settings = OidcSettings.from_section(OidcSection.model_validate({**base, "client_secret_file": str(secret)}))
    assert settings.client_secret == "s3cret" and "s3cret" not in repr(settings)
    monkeypatch.setenv("CP_OIDC_SECRET", "from-env")
    assert OidcSettings.from_section(OidcSection.model_validate(
        {**base, "client_secret_env": "CP_OIDC_SECRET"})).client_secret == "from-env"
    with pytest.raises(ConfigError, match="https"):
        OidcSettings("http://login.bank-a.hk", "sampan", "s", base["redirect_uri"])
