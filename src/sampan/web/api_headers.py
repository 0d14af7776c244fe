"""Security headers for every REST API answer (pure ASGI middleware, added once by the app factory).

Why: API answers carry account data, tokens (POST /me/tokens) and job specs. `Cache-Control: no-store` keeps
them out of shared and browser caches; `nosniff` stops a browser from reading a JSON body as HTML or script;
`X-Frame-Options: DENY` and CSP `frame-ancestors 'none'` stop another site framing the API's pages (the
OpenAPI docs) for clickjacking; no Referer leaks ids to other origins. A route's own headers are kept.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiSecurityHeaders", "API_HEADERS"]

API_HEADERS = ((b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"),
               (b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'"),
               (b"referrer-policy", b"no-referrer"))


class ApiSecurityHeaders:
    """Adds `API_HEADERS` (unless the route set the header itself) to responses under `prefix`."""

    def __init__(self, app: Any, prefix: str) -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefix):
            await self.app(scope, receive, send)
            return

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                message = {**message, "headers": headers + [(n, v) for n, v in API_HEADERS if n not in present]}
            await send(message)

        await self.app(scope, receive, sending)
