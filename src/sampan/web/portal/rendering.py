"""Jinja2 rendering for the verification portal: its own templates and static folder, the console's rules.

Why a second environment rather than the console's: the portal is mountable on its own (/portal) with its own
pages and navigation, but it keeps the console's safety rules by reusing them: autoescape everywhere (project,
company and test names come from applicants), flash notes in a signed cookie (`Flasher`, never the URL), no inline
script (static JS only, CSP `script-src 'self'`), and redirects built from paths made here, never from input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

import sampan
from sampan.web.console.rendering import Flasher, certificate_fingerprint, secure_cookies

__all__ = ["ENV", "PREFIX", "STATIC", "TEMPLATES", "FLASH_COOKIE", "render", "redirect", "set_cookie"]

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
PREFIX = "/portal"
FLASH_COOKIE = "sampan_portal_flash"

ROLE_LABELS = {"applicant": "applicant", "reviewer": "reviewer", "admin": "administrator"}
VERDICT_WORDS = {"pass": "passed", "fail": "failed", "skip": "not applicable", "error": "error"}


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(default=True,
                      default_for_string=True), trim_blocks=True, lstrip_blocks=True)
    env.globals.update(prefix=PREFIX, version=sampan.__version__,
                       static=lambda name: f"{PREFIX}/static/{name}?v={sampan.__version__}")
    env.filters["cert_fingerprint"] = certificate_fingerprint
    env.filters["verdict_word"] = lambda value: VERDICT_WORDS.get(str(value), str(value)) if value else "not run"
    env.filters["role_label"] = lambda value: ROLE_LABELS.get(str(value), str(value))
    env.filters["json_text"] = lambda value: json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    env.filters["when"] = lambda value: str(value)[:19].replace("T", " ") if value else "—"
    return env


ENV = _environment()


def set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int | None = None) -> None:
    """A portal cookie: HttpOnly, SameSite=Strict, path /portal, Secure under TLS (or when the app says so)."""
    response.set_cookie(name, value, httponly=True, samesite="strict", secure=secure_cookies(request), path=PREFIX,
                        max_age=max_age)


def render(request: Request, template: str, context: Mapping[str, Any], status: int = 200) -> HTMLResponse:
    """The page ``template`` with the shared context (who is signed in, CSRF token, flash notes) that the portal's
    route class put on the request; pending flash notes are shown once and cleared."""
    state = request.state
    page = ENV.get_template(template).render(
        user=getattr(state, "principal", None), csrf_token=getattr(state, "csrf_token", ""),
        flashes=list(getattr(state, "flashes", [])), title=context.get("title", "Sampan verification portal"),
        section=context.get("section", ""), **{k: v for k, v in context.items() if k not in ("title", "section")})
    response = HTMLResponse(page, status_code=status)
    if request.cookies.get(FLASH_COOKIE):
        response.delete_cookie(FLASH_COOKIE, path=PREFIX)
    for name, value in getattr(state, "set_cookies", {}).items():
        set_cookie(request, response, name, value)
    return response


def redirect(request: Request, path: str, *notes: tuple[str, str]) -> Response:
    """303 to a portal path (``path`` is always built here, never taken from input), carrying ``notes`` as a signed
    one-shot cookie."""
    response = RedirectResponse(f"{PREFIX}{path}", status_code=303)
    if notes:
        flasher: Flasher = request.app.state.portal.flasher
        set_cookie(request, response, FLASH_COOKIE, flasher.encode(list(notes)), max_age=60)
    return response
