"""OpenID Connect sign-in against a LOCAL provider (oidc-provider-mock on 127.0.0.1, port 0): a linked subject
gets the same session a password sign-in gets; settings keep the client secret out of the config. The refused
cases (wrong state, wrong nonce, unlinked subject, another issuer, login CSRF) are attacks:
tests/attacks/test_oidc_sign_in.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("authlib")
pytest.importorskip("oidc_provider_mock")

from _oidc_local import LocalServer, authorize, client, lying_discovery, mock_provider, plane, signed_in, start

from sampan.web.api_auth import SESSION_COOKIE
from sampan.web.oidc import CALLBACK_PATH, LOGIN_PATH, OidcSection, OidcSettings


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalServer]:
    server = mock_provider()
    yield server
    server.close()


def test_linked_subject_signs_in_with_a_normal_session(tmp_path: Path, provider: LocalServer) -> None:
    cp = plane(tmp_path)
    alice, _ = cp.accounts.create_user("alice", "party_operator", "bank_a")
    cp.accounts.link_oidc(alice.user_id, provider.url, "alice@bank-a.hk")
    c = client(cp, provider.url)
    back = authorize(start(c), "alice@bank-a.hk")
    response = c.get(CALLBACK_PATH, params=back)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console/jobs"
    cookie = response.cookies.get(SESSION_COOKIE)
    assert cookie
    principal, _ = cp.accounts.session(cookie)  # the same kind of session a password sign-in makes
    assert (principal.username, principal.role, principal.organisation) == ("alice", "party_operator", "bank_a")
    assert signed_in(c) == "alice"


def test_next_stays_on_this_site(tmp_path: Path, provider: LocalServer) -> None:
    cp = plane(tmp_path)
    alice, _ = cp.accounts.create_user("alice", "analyst")
    cp.accounts.link_oidc(alice.user_id, provider.url, "alice")
    c = client(cp, provider.url)
    response = c.get(LOGIN_PATH, params={"next": "//evil.example/x"})
    assert response.status_code == 303
    endpoint, query = response.headers["location"].split("?", 1)
    from urllib.parse import parse_qs

    params = {k: v[0] for k, v in parse_qs(query).items()} | {"_endpoint": endpoint}
    done = c.get(CALLBACK_PATH, params=authorize(params, "alice"))
    assert done.status_code == 303 and done.headers["location"] == "/"


def test_discovery_must_name_the_configured_issuer(tmp_path: Path, provider: LocalServer) -> None:
    lying = LocalServer(lying_discovery(provider.url, issuer="https://login.elsewhere.example"))
    try:
        response = client(plane(tmp_path), lying.url).get(LOGIN_PATH)
        assert response.status_code == 401 and "names issuer" in response.json()["error"]
    finally:
        lying.close()


def test_settings_keep_the_secret_out_of_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from sampan.errors import ConfigError

    base = {"issuer": "https://login.bank-a.hk", "client_id": "sampan",
            "redirect_uri": "https://cp.example" + CALLBACK_PATH}
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


def test_console_sign_in_page_offers_the_provider(tmp_path: Path, provider: LocalServer) -> None:
    from _oidc_local import REDIRECT
    from fastapi.testclient import TestClient

    from sampan.web.app import AppSettings, create_app

    settings = OidcSettings(provider.url, "sampan-console", "client-secret-for-tests", REDIRECT, timeout_s=60.0)
    app = create_app(plane(tmp_path), AppSettings(secure_cookies=False, console=True, oidc=settings))
    page = TestClient(app).get("/console/sign-in")
    assert page.status_code == 200 and f'href="{LOGIN_PATH}?next=' in page.text


def test_control_plane_section_reads_oidc(tmp_path: Path) -> None:
    """coordinator.toml's [control_plane.oidc]: the secret file relative to it, bad settings refused at start."""
    from sampan.errors import ConfigError
    from sampan.web.control_plane import parse_section
    from sampan.web.oidc import settings_from_config

    (tmp_path / "oidc-secret").write_text("s3cret")
    (tmp_path / "oidc-secret").chmod(0o600)
    oidc = {"issuer": "https://login.bank-a.hk", "client_id": "sampan", "client_secret_file": "oidc-secret",
            "redirect_uri": "http://127.0.0.1:8443" + CALLBACK_PATH}
    section = parse_section({"oidc": oidc}, tmp_path, "coordinator.toml")
    settings = settings_from_config(section.oidc, source="coordinator.toml")
    assert settings is not None and settings.client_secret == "s3cret"
    with pytest.raises(ConfigError, match=r"\[control_plane.oidc\].*client_secret"):
        parse_section({"oidc": {**oidc, "client_secret": "inline"}}, tmp_path, "coordinator.toml")


def test_an_issuer_ending_in_a_slash_is_compared_as_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Some providers' issuers end in '/': the ID token's `iss` is compared with it exactly, so the setting keeps
    it; only the discovery URL is built without a doubled slash."""
    import json
    from typing import Any

    from sampan.web.oidc import OidcClient

    asked: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        asked.append(environ["PATH_INFO"])
        base = f"http://{environ['HTTP_HOST']}"
        body = {"issuer": base + "/", "authorization_endpoint": base + "/authorize", "token_endpoint": base + "/token",
                "jwks_uri": base + "/jwks"}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    server = LocalServer(app)
    try:
        monkeypatch.setenv("CP_OIDC_SECRET", "s")
        section = OidcSection.model_validate({"issuer": server.url + "/", "client_id": "sampan",
                                              "client_secret_env": "CP_OIDC_SECRET",
                                              "redirect_uri": server.url + CALLBACK_PATH})
        settings = OidcSettings.from_section(section)
        assert settings.issuer == server.url + "/"
        assert OidcClient(settings).metadata()["issuer"] == server.url + "/"
        assert asked == ["/.well-known/openid-configuration"]
    finally:
        server.close()
