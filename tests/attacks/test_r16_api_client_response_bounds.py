"""R16-API-3 / R16-API-4: a platform under test controls how much and how long the verifier's client reads.

BenchmarkClient (and the catalogue's `Api`, which the runner really uses) read a response body whole into memory
with no size limit, and httpx's `timeout` bounds each socket read, not the call. So a platform (the next issue's
portal connects to endpoints applicants supply):
- API-3: answers with an endless (here 200 MiB) body: the verifier buffers all of it (memory exhaustion);
- API-4: drips one byte of a chunked body every 0.5 s: a call with timeout=2 never times out.
The correct client refuses a body past a bound (the API's own bodies are a few MB: 200,000 scores) and bounds the
whole call by a deadline.
Fixed: regular tests now."""

from __future__ import annotations

import socket
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")

from sampan.errors import SampanError  # noqa: E402
from sampan.verify.catalogue.http import Api  # noqa: E402
from sampan.verify.client import BenchmarkClient, VerifyError  # noqa: E402

HEAD = (b"HTTP/1.1 200 OK\r\nX-Bench-API-Version: 1.0\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")
MIB = 1 << 20


class _Hostile:
    """One-connection HTTP server: 'huge' streams 200 MiB of JSON whitespace, 'drip' one byte per 0.5 s for 12 s."""

    def __init__(self, kind: str) -> None:
        self.kind, self.sent = kind, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        conn, _ = self.sock.accept()
        try:
            conn.recv(65536)
            conn.sendall(HEAD)
            if self.kind == "drip":
                conn.sendall(b"1\r\n{\r\n")
                end = time.monotonic() + 12
                while time.monotonic() < end:
                    conn.sendall(b"1\r\n \r\n")
                    self.sent += 1
                    time.sleep(0.5)
            else:
                framed = b"%x\r\n" % MIB + b" " * MIB + b"\r\n"
                for _ in range(200):
                    conn.sendall(framed)
                    self.sent += MIB
        except OSError:
            pass  # the client hung up: what we want
        finally:
            conn.close()
            self.sock.close()


def test_client_stops_reading_an_endless_response() -> None:
    server = _Hostile("huge")
    with BenchmarkClient(server.url, "t", timeout=10) as client, pytest.raises(VerifyError):
        client.info()
    time.sleep(0.5)
    assert server.sent < 100 * MIB, f"the client read {server.sent // MIB} MiB of one answer"


def test_catalogue_api_stops_reading_an_endless_response() -> None:
    server = _Hostile("huge")
    api = Api(server.url, "t", timeout_s=10)
    try:
        with pytest.raises(SampanError):  # a clear refusal, not an httpx error or 200 MiB in memory
            api.call("GET", "/info")
    finally:
        api.close()
    time.sleep(0.5)
    assert server.sent < 100 * MIB, f"the runner's client read {server.sent // MIB} MiB of one answer"


def test_client_timeout_bounds_the_whole_call() -> None:
    server = _Hostile("drip")
    started = time.monotonic()
    with BenchmarkClient(server.url, "t", timeout=2) as client, pytest.raises(VerifyError) as failed:
        client.info()
    took = time.monotonic() - started
    assert failed.value.code == "timeout" and took < 6, (failed.value.code, round(took, 1), str(failed.value))
