"""Serve an ASGI app on 127.0.0.1 (a free port) in a background thread, optionally over TLS or mTLS.

The runner's local mode and the tests start a platform's Benchmark API this way; the TLS security tests need a
real TLS server whose client-certificate policy (required, CA, CRL) they choose, so the context is built here
and handed to uvicorn rather than left to its file options. Loopback only: this is not a deployment server.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ServerTLS:
    """The server side of TLS: its certificate and key files; ``client_ca`` (file) turns on mTLS (a client
    certificate from that CA is required); ``crl`` (PEM file) also refuses the certificates it revokes."""

    cert_file: str | Path
    key_file: str | Path
    client_ca: str | Path | None = None
    crl: str | Path | None = None
    require_client_cert: bool = True

    def context(self) -> ssl.SSLContext:
        """The server context; with a CRL, each handshake re-reads it when the file changed (a revocation made
        while the server runs takes effect at the next connection)."""
        ctx = self._build()
        if self.crl is not None:
            crl = Path(self.crl)
            state: list[tuple[tuple[int, int], ssl.SSLContext]] = [(_stamp(crl), ctx)]
            lock = threading.Lock()

            def fresh(sslobj: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext) -> None:
                with lock:
                    stamp = _stamp(crl)
                    if stamp != state[0][0]:
                        state[0] = (stamp, self._build())
                    if state[0][1] is not ctx:
                        sslobj.context = state[0][1]

            ctx.sni_callback = fresh
        return ctx

    def _build(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        if self.client_ca is not None:
            ctx.load_verify_locations(cafile=str(self.client_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED if self.require_client_cert else ssl.CERT_OPTIONAL
            if self.crl is not None:
                ctx.load_verify_locations(cafile=str(self.crl))
                ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        return ctx


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


class LocalServer:
    """A running server: ``url`` (http(s)://127.0.0.1:port), ``port``; ``stop()`` (or leave the with-block)
    shuts it down and joins the thread."""

    def __init__(self, app: Any, *, tls: ServerTLS | None = None, log_level: str = "warning",
                 start_timeout: float = 20.0) -> None:
        import uvicorn  # optional extra: only the verifier's local mode needs it

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        options: dict[str, Any] = {}
        if tls is not None:
            context = tls.context()  # build now: a bad file fails here, in the caller's thread
            options = {"ssl_certfile": str(tls.cert_file), "ssl_keyfile": str(tls.key_file),
                       "ssl_context_factory": lambda _config, _default: context}
        config = uvicorn.Config(app, log_level=log_level, lifespan="off", access_log=False, **options)
        self._server = uvicorn.Server(config)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name=f"bench-api-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + start_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._sock.close()
                raise RuntimeError(f"the local server on port {self.port} did not start (see the log above)")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the local server on port {self.port} did not start in {start_timeout:g} s")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def serve_app(app: Any, *, tls: ServerTLS | None = None, log_level: str = "warning") -> LocalServer:
    """Start ``app`` on 127.0.0.1:<free port> in a thread; returns the running LocalServer (use it as a
    context manager, or call stop())."""
    return LocalServer(app, tls=tls, log_level=log_level)


__all__ = ["LocalServer", "ServerTLS", "serve_app"]
