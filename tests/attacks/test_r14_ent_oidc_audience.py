"""R14-ENT-5: the ID token's audience is never compared with the console's client id. `OidcClient.validate` gives
authlib's `CodeIDToken` claims options for `iss` only; authlib checks `aud` only when an `aud` option is given, and
its `azp` check accepts a token whose `aud` names another client as long as `azp` names ours. OpenID Connect Core
3.1.3.7 (3): the ID token MUST be rejected if it does not list the client as an audience; the module docstring
and docs/deploy.md §9.2 say `aud` is checked. A provider-side token made for another relying party (aud = that
client) therefore passes here."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("authlib")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _oidc_local import LocalServer, client, plane, signed_in  # noqa: E402

from sampan.web.oidc import CALLBACK_PATH, LOGIN_PATH  # noqa: E402


class _Provider:
    """A minimal provider whose token endpoint returns an ID token for `aud`, with `azp` = the console."""

    def __init__(self) -> None:
        from joserfc.jwk import RSAKey

        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self.nonce = ""
        self.server = LocalServer(self.app)
        self.url = self.server.url

    def app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        from joserfc import jwt

        path = environ["PATH_INFO"]
        if path == "/.well-known/openid-configuration":
            body: dict[str, Any] = {"issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
                                    "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/jwks",
                                    "id_token_signing_alg_values_supported": ["RS256"]}
        elif path == "/jwks":
            body = {"keys": [self.key.as_dict(private=False)]}
        elif path == "/token":
            now = int(time.time())
            claims = {"iss": self.url, "sub": "alice", "aud": "another-bank-app", "azp": "sampan-console",
                      "exp": now + 300, "iat": now, "nonce": self.nonce}
            token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)
            body = {"access_token": "opaque", "token_type": "Bearer", "expires_in": 300, "id_token": token}
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b""]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]


def test_id_token_for_another_audience_is_refused(tmp_path: Path) -> None:
    provider = _Provider()
    try:
        cp = plane(tmp_path)
        user, _ = cp.accounts.create_user("alice", "analyst")
        cp.accounts.link_oidc(user.user_id, provider.url, "alice")
        c = client(cp, provider.url)
        login = c.get(LOGIN_PATH, params={"next": "/"})
        query = {k: v[0] for k, v in parse_qs(urlsplit(login.headers["location"]).query).items()}
        provider.nonce = query["nonce"]
        c.get(CALLBACK_PATH, params={"code": "any", "state": query["state"]})
        assert signed_in(c) is None, "an ID token issued to another client's audience signed 'alice' in"
    finally:
        provider.server.close()
