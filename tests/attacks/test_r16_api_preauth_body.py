"""R16-API-1: the Benchmark API server reads (and JSON-parses) a request body before it checks the bearer token.

`_Envelope` buffers the whole body (up to 64 MiB) for every POST, and FastAPI parses it as JSON before the auth
dependency runs. So a caller with no token (a) makes the server wait for, hold and parse up to 64 MiB per request
(a pre-auth memory/CPU lever on the control plane that mounts this app), and (b) gets `422 invalid` for a malformed
body instead of the `401 unauthorized` that docs/verification/api.md promises "on every endpoint". Measured here:
one unauthenticated POST of 60 MiB of `[0.5,0.5,...]` took 32 s and ~790 MB of server memory (json.loads builds
16M floats) before its 401. The correct server answers 401 as soon as it has the headers.
Fixed: regular tests now."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from sampan.verify.api import API_VERSION, VERSION_HEADER  # noqa: E402
from sampan.verify.serve_local import serve_app  # noqa: E402
from sampan.verify.server import make_benchmark_app  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verify"))
from _api_fake_backend import FakeBackend  # noqa: E402


def test_no_token_is_401_before_any_body_is_read() -> None:
    with serve_app(make_benchmark_app(FakeBackend(), token="right-token")) as server:
        # (b) a malformed body without a token must still be 401, not a 422 about the JSON
        bad = httpx.post(server.url + "/bench/v1/projects", content=b"{",
                         headers={"Content-Type": "application/json"}, timeout=10)
        assert bad.status_code == 401, bad.text
        assert bad.headers[VERSION_HEADER] == API_VERSION
        # (a) headers announcing 60 MB, no token, no body sent: the answer needs no body, so it comes at once
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            raw.settimeout(3)
            raw.sendall(b"POST /bench/v1/projects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 60000000\r\n\r\n")
            try:
                head = raw.recv(64)
            except TimeoutError:
                head = b"(no answer in 3 s: the server is waiting for the unauthenticated body)"
        assert head.startswith(b"HTTP/1.1 401"), head
