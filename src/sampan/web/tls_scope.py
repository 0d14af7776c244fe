"""uvicorn's HTTP protocol, plus the ASGI TLS extension: the verified client certificate in the request scope.

Why: the control plane's agent endpoints (sampan.web.api_agent) authenticate a party agent by its mutual-TLS
client certificate, read from ``scope["extensions"]["tls"]["client_cert_chain"]`` (the ASGI TLS extension).
uvicorn verifies the certificate in the handshake (``ssl_cert_reqs``, CA and CRL) but does not put it in the
scope; this protocol does, per connection, after the handshake. Use it as ``uvicorn.run(app, http=
TlsScopeH11Protocol, ssl_...=...)``. Without TLS (or without a client certificate) nothing is added, and the
agent endpoints refuse (403): they fail closed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import MutableMapping
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["TlsScopeH11Protocol", "with_client_certificate"]


def with_client_certificate(app: Any, pem: str) -> Any:
    """`app`, with the client's certificate (PEM) in every HTTP request's ASGI TLS extension."""
    async def asgi(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = {**dict(extensions.get("tls") or {}), "client_cert_chain": [pem]}
            scope = {**scope, "extensions": extensions}
        await app(scope, receive, send)
    return asgi


class TlsScopeH11Protocol(H11Protocol):
    """H11Protocol whose app sees the connection's verified client certificate (see the module docstring)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            self.app = with_client_certificate(self.app, ssl.DER_cert_to_PEM_cert(der))
