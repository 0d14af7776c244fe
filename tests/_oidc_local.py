"""A local OpenID provider (oidc-provider-mock on 127.0.0.1, port 0, werkzeug in a thread) and a control plane
whose app mounts the OIDC sign-in: shared by tests/test_web_oidc.py and tests/attacks/test_oidc_sign_in.py."""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from werkzeug.serving import make_server

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

from sampan.runtime.store import Store
from sampan.web.app import AppSettings, create_app
from sampan.web.auth import Accounts, AuthSettings
from sampan.web.fake_gateway import FakeGateway
from sampan.web.oidc import CALLBACK_PATH, FLOW_COOKIE, LOGIN_PATH, OidcSettings
from sampan.web.service import ControlPlane

REDIRECT = "http://127.0.0.1:8443" + CALLBACK_PATH


class LocalServer:
    """A WSGI app on 127.0.0.1, port 0, served by werkzeug in a thread."""

    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


def mock_provider() -> LocalServer:
    import oidc_provider_mock

    return LocalServer(oidc_provider_mock.app(require_nonce=True))


def plane(tmp_path: Path) -> ControlPlane:
    store = Store.open(f"sqlite:///{tmp_path / 'control.db'}", audit_key=tmp_path / "audit.pem")
    accounts = Accounts(store.engine, AuthSettings(argon2={"time_cost": 1, "memory_cost": 1024, "parallelism": 1}))
    return ControlPlane(store, FakeGateway(store, tmp_path / "agents"), accounts)


def client(cp: ControlPlane, issuer: str) -> TestClient:
    settings = OidcSettings(issuer, "sampan-console", "client-secret-for-tests", REDIRECT, timeout_s=60.0)
    app = create_app(cp, AppSettings(secure_cookies=False, console=False, oidc=settings))
    return TestClient(app, follow_redirects=False)


def start(c: TestClient) -> dict[str, str]:
    """Our login step: the redirect to the provider, as parsed query parameters (+ `_endpoint`)."""
    response = c.get(LOGIN_PATH, params={"next": "/console/jobs"})
    assert response.status_code == 303, response.text
    assert FLOW_COOKIE in response.cookies
    location = response.headers["location"]
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert params["code_challenge_method"] == "S256" and params["code_challenge"] and params["nonce"]
    assert params["redirect_uri"] == REDIRECT and params["state"]
    params["_endpoint"] = location.split("?", 1)[0]
    return params


def authorize(params: dict[str, str], subject: str) -> dict[str, str]:
    """The person signs in at the provider as `subject`; the provider's redirect back, as query parameters."""
    query = {k: v for k, v in params.items() if k != "_endpoint"}
    response = httpx.post(params["_endpoint"], params=query, data={"sub": subject}, follow_redirects=False,
                          timeout=60)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def signed_in(c: TestClient) -> str | None:
    me = c.get("/api/v1/me")
    return str(me.json()["username"]) if me.status_code == 200 else None


def lying_discovery(real: str, issuer: str | None = None) -> Any:
    """A discovery document that claims its own URL (or `issuer`) as issuer but sends every request to `real`."""

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
