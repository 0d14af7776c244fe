"""Jinja2 rendering for the console: one autoescaping environment, the shared page context, signed flash notes.

Why autoescape everywhere (not per template): names of consortia, datasets, jobs, columns and refusal reasons come
from other organisations; an unescaped one would run script in an admin's browser. Flash notes travel in a short
signed cookie (not the URL), so another site cannot make the console display a message of its choosing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

import sampan

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
PREFIX = "/console"
FLASH_COOKIE = "sampan_flash"

# One word per state wherever a person reads it: the runner says "completed", the control plane's job table and the
# FakeGateway say "finished" for the same thing; the console shows "completed" for both (the stored values stay).
STATUS_WORDS = {"finished": "completed"}

ROLE_LABELS = {"consortium_admin": "consortium admin", "party_operator": "party operator", "analyst": "analyst",
               "auditor": "auditor"}


def certificate_fingerprint(pem: str | None) -> str:
    """The first 16 hex digits of a member certificate's SHA-256 fingerprint, what an admin compares by phone with
    the organisation's own; "" when there is none or it does not parse."""
    if not pem:
        return ""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii")).fingerprint(hashes.SHA256()).hex()[:16]
    except ValueError:
        return ""


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(default=True,
                      default_for_string=True), trim_blocks=True, lstrip_blocks=True)
    env.globals.update(prefix=PREFIX, version=sampan.__version__,
                       static=lambda name: f"{PREFIX}/static/{name}?v={sampan.__version__}")
    env.filters["cert_fingerprint"] = certificate_fingerprint
    env.filters["status_word"] = lambda value: STATUS_WORDS.get(str(value), str(value))
    env.filters["tojson_pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True, default=str)
    # JSON shown as text (autoescape escapes it); `tojson` is for script contexts and shows ' as \u0027
    env.filters["json_text"] = lambda value: json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return env


ENV = _environment()


class Flasher:
    """Signs the one-shot notes shown after a redirect (post/redirect/get)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, body: bytes) -> str:
        return hmac.new(self._key, b"sampan-flash\x00" + body, hashlib.sha256).hexdigest()

    def encode(self, notes: list[tuple[str, str]]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(notes).encode()).decode()
        return f"{body}.{self._mac(body.encode())}"

    def decode(self, value: str | None) -> list[tuple[str, str]]:
        if not value or "." not in value:
            return []
        body, mac = value.rsplit(".", 1)
        if not hmac.compare_digest(self._mac(body.encode()), mac):
            return []
        try:
            notes = json.loads(base64.urlsafe_b64decode(body.encode()))
        except ValueError:
            return []
        return [(str(kind), str(text)) for kind, text in notes if kind in ("ok", "info", "error")][:5]


def secure_cookies(request: Request) -> bool:
    """Mark cookies Secure under TLS, and whenever the app says so (`AppSettings.secure_cookies`, T2's app)."""
    return request.url.scheme == "https" or bool(getattr(request.app.state, "secure_cookies", False))


def render(request: Request, template: str, context: Mapping[str, Any], status: int = 200) -> HTMLResponse:
    """The page ``template`` with the shared context (user, CSRF token, flashes) that `console_state` put on the
    request; pending flash notes are shown once and cleared."""
    state = request.state
    flashes = list(getattr(state, "flashes", [])) + list(context.get("errors_as_flash", []))
    page = ENV.get_template(template).render(
        user=getattr(state, "console_user", None), csrf_token=getattr(state, "csrf_token", ""), flashes=flashes,
        title=context.get("title", "Sampan"), section=context.get("section", ""), **{
            k: v for k, v in context.items() if k not in ("title", "section", "errors_as_flash")})
    response = HTMLResponse(page, status_code=status)
    if request.cookies.get(FLASH_COOKIE):
        response.delete_cookie(FLASH_COOKIE, path=PREFIX)
    for name, value in getattr(state, "set_cookies", {}).items():
        response.set_cookie(name, value, httponly=True, samesite="strict", secure=secure_cookies(request), path=PREFIX)
    return response


def redirect(request: Request, path: str, *notes: tuple[str, str]) -> Response:
    """303 to a console path (never another origin: `path` is always built here, never taken from input), carrying
    ``notes`` as a signed one-shot cookie."""
    response = RedirectResponse(f"{PREFIX}{path}", status_code=303)
    if notes:
        flasher: Flasher = request.app.state.console_flasher
        response.set_cookie(FLASH_COOKIE, flasher.encode(list(notes)), httponly=True, samesite="strict",
                            secure=secure_cookies(request), path=PREFIX, max_age=60)
    return response
