"""A request-body size limit for the portal's pages, applied before anything parses a form.

Why: every portal POST parses its form before the CSRF check (the token is a form field), and Starlette bounds one
field (1 MiB) and the number of fields (1,000), not the body: without this an outsider makes the portal hold
~1 GiB per request (R17-PORTAL-3). Threat model: an anonymous client sends a large body, announced by
Content-Length or streamed (chunked, or a Content-Length that lies low). A declared length over the limit is refused
with 413 before a byte is read; a streamed body is counted as it arrives and cut at the limit (413 if no answer has
started yet). The default, 256 KiB, holds the largest legitimate form (the new-project page with a 20,000-character
certificate, and a questionnaire's notes in any script, percent-encoded) several times over.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit", "DEFAULT_MAX_BODY"]

DEFAULT_MAX_BODY = 256 * 1024


class _TooLarge(Exception):
    """Raised from the wrapped `receive` once the streamed body passes the limit."""


class BodyLimit:
    """ASGI middleware: HTTP requests whose path starts with one of ``prefixes`` may carry at most ``max_bytes``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = DEFAULT_MAX_BODY, prefixes: tuple[str, ...] = ("/",)) -> None:
        if max_bytes < 1:
            raise ValueError("BodyLimit.max_bytes must be at least 1")
        self.app = app
        self.max_bytes = max_bytes
        self.prefixes = prefixes

    def _refusal(self) -> PlainTextResponse:
        return PlainTextResponse(f"request body too large: at most {self.max_bytes} bytes", status_code=413,
                                 headers={"Connection": "close"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        declared = next((value for name, value in scope.get("headers", ()) if name == b"content-length"), None)
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0 or length > self.max_bytes:  # a malformed length is refused like a long one
                await self._refusal()(scope, receive, send)
                return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await self._refusal()(scope, receive, send)
