"""R16-API-2: the server's body-size guard copies the whole body on every chunk (quadratic time, on the event loop).

`_Envelope` grows the body with `body += chunk` (a new bytes object each time). A client that sends a body below
the 64 MiB limit in small pieces (pacing the writes, so uvicorn hands them over one by one) costs the server
O(n^2/chunk) bytes of copying: 64 MiB in 64 KiB pieces is ~34 GB copied (~50 s of one core here), and with the
R16-API-1 ordering it needs no token. The copy runs in the ASGI middleware, i.e. on the event loop, so every other
request waits. A list of chunks (or bytearray) joined once is linear. The test drives the public ASGI app with
16 MiB in 4 KiB messages and a valid token: a linear server answers well within 15 s.
Fixed: regular tests now."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from sampan.verify.server import make_benchmark_app  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verify"))
from _api_fake_backend import FakeBackend  # noqa: E402

TOTAL = 16 * 1024 * 1024
PIECE = 4096


def test_a_chunked_body_below_the_limit_is_read_in_linear_time() -> None:
    app = make_benchmark_app(FakeBackend(), token="tok")
    sent = {"n": 0}
    status: list[int] = []
    piece = b" " * PIECE

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0)  # a real socket yields between messages (and lets the timeout below cancel us)
        if sent["n"] >= TOTAL:
            return {"type": "http.disconnect"}
        sent["n"] += PIECE
        return {"type": "http.request", "body": piece, "more_body": sent["n"] < TOTAL}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/bench/v1/projects", "raw_path": b"/bench/v1/projects", "root_path": "",
             "query_string": b"", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1),
             "headers": [(b"host", b"x"), (b"authorization", b"Bearer tok"),
                         (b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]}

    async def main() -> None:
        await asyncio.wait_for(app(scope, receive, send), timeout=15.0)

    try:
        asyncio.run(main())
    except TimeoutError:
        pytest.fail(f"the server had read {sent['n'] / 2**20:.1f} of 16 MiB after 15 s (quadratic copying)")
    assert sent["n"] == TOTAL and status == [422]  # read it all, then: not JSON
