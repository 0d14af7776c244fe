"""Security headers for every console response (pure ASGI middleware, added once on the app).

Threats: script injected through a stored name (CSP forbids inline script and foreign origins: `script-src 'self'`),
framing for clickjacking (X-Frame-Options DENY + frame-ancestors 'none'), the run or job id leaking to another
origin in the Referer (no-referrer), MIME sniffing of a served report (nosniff), and a shared browser's back
button or cache showing an authenticated page after sign-out (Cache-Control no-store on every page but the static
assets). A route that needs a stricter policy (the served HTML report) sets its own CSP; this keeps it.
"""

from __future__ import annotations

from typing import Any

CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# A served report or receipt: its own inline styles only, no script at all, no network.
DOCUMENT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'; "
                "form-action 'none'; frame-ancestors 'none'; base-uri 'none'; sandbox")

_ALWAYS = ((b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
           (b"x-content-type-options", b"nosniff"), (b"cross-origin-opener-policy", b"same-origin"),
           (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"))


class SecurityHeaders:
    """Adds CSP, framing, referrer and caching headers to responses under ``prefixes``; keeps a route's own CSP
    and Cache-Control. Static assets (immutable per release) may be cached; nothing else may."""

    def __init__(self, app: Any, prefixes: tuple[str, ...] = ("/",), static_prefix: str = "/static/") -> None:
        self.app, self.prefixes, self.static_prefix = app, prefixes, static_prefix

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope["type"] != "http" or not path.startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        static = path.startswith(self.static_prefix)

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                extra = [(n, v) for n, v in _ALWAYS if n not in present]
                if b"content-security-policy" not in present:
                    extra.append((b"content-security-policy", CONSOLE_CSP.encode()))
                if not static:  # an authenticated page must never come back from a cache
                    headers = [(n, v) for n, v in headers if n.lower() != b"cache-control"]
                    extra.append((b"cache-control", b"no-store"))
                elif b"cache-control" not in present:
                    extra.append((b"cache-control", b"public, max-age=3600"))
                message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, sending)
