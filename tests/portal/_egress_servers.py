"""Hostile little HTTP servers on 127.0.0.1 for the egress and qualification tests (a thread each).

`hostile_server(behaviour)` serves every request by ``behaviour(handler)``; the helpers below are the behaviours an
applicant's endpoint may show: redirect elsewhere, answer endlessly, trickle slowly, speak another API version.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass
class Hits:
    """Requests a server saw (paths), so a test can show that nothing reached it."""

    paths: list[str] = field(default_factory=list)


@contextlib.contextmanager
def hostile_server(behaviour: Callable[[http.server.BaseHTTPRequestHandler], None]) -> Iterator[tuple[int, Hits]]:
    hits = Hits()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            hits.paths.append(self.path)
            try:
                behaviour(self)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_POST = do_GET  # noqa: N815

        def log_message(self, *_: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], hits
    finally:
        server.shutdown()
        server.server_close()


def redirect_to(location: str) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    def answer(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("X-Bench-API-Version", "1.0")
        h.send_header("Content-Length", "0")
        h.end_headers()

    return answer


def endless(h: http.server.BaseHTTPRequestHandler) -> None:
    """200 with the API's header and a body that never ends (chunks of 64 KiB until the client leaves)."""
    h.send_response(200)
    h.send_header("X-Bench-API-Version", "1.0")
    h.send_header("Content-Type", "application/json")
    h.end_headers()
    chunk = b" " * 65536
    for _ in range(100_000):  # ~6 GB: far past any cap, ends only when the client hangs up
        h.wfile.write(chunk)


def trickle(h: http.server.BaseHTTPRequestHandler) -> None:
    """200, then one byte every 0.2 s for a minute."""
    h.send_response(200)
    h.send_header("X-Bench-API-Version", "1.0")
    h.end_headers()
    for _ in range(300):
        h.wfile.write(b" ")
        h.wfile.flush()
        time.sleep(0.2)


def version_server(version: str) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    def answer(h: http.server.BaseHTTPRequestHandler) -> None:
        body = (b'{"api_version": "' + version.encode() + b'", "platform": "other", "platform_version": "9"}')
        h.send_response(200)
        h.send_header("X-Bench-API-Version", version)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return answer
