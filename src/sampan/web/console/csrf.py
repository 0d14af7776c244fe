"""CSRF protection for the console's forms: a per-session token, compared in constant time.

Threat: another site makes a signed-in user's browser POST a form to the console (the session cookie rides
along). Defence: every form carries a token the other site cannot read. For a signed-in user the token is derived
from the session (HMAC of the session's own CSRF secret under a key held only by this process), so it changes with
every session and leaks nothing about the session id. Before sign-in (the sign-in form itself, against login CSRF)
the binding is a random pre-session cookie. SameSite=Strict cookies are a second, independent layer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PRESESSION_COOKIE = "sampan_presession"
FIELD = "csrf_token"


class CsrfGuard:
    """Issues and checks form tokens bound to a session (or pre-session) value."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def token(self, binding: str) -> str:
        """The form token for ``binding`` (the session's CSRF secret, or the pre-session cookie)."""
        return hmac.new(self._key, b"sampan-console-csrf\x00" + binding.encode(), hashlib.sha256).hexdigest()

    def check(self, binding: str | None, submitted: str | None) -> bool:
        """True only when ``submitted`` is the token for ``binding``; constant time in the token's content."""
        if not binding or not submitted:
            return False
        return hmac.compare_digest(self.token(binding).encode(), submitted.encode())


def new_presession() -> str:
    """A fresh pre-session value (cookie) for forms shown before sign-in."""
    return secrets.token_urlsafe(32)
