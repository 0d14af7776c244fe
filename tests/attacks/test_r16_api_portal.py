"""R16-API follow-ups for the portal (a verifier pointed at applicants' endpoints), and the catalogue's own client.

- R16-API-3/4/5 for the runner's `catalogue.http.Api`: a drip-fed answer ends at its deadline as ApiCallError;
  a nested or NaN body decodes to None (not JSON), never a RecursionError or a NaN in a verdict.
- Observation "token over plain http": a plain-http URL to a host other than loopback is logged by default and
  refused with plain_http="refuse" (both clients); loopback stays allowed.
- Observation "PartyConnect.address is SSRF": `RecordingProxy(allowed_hosts=...)` refuses any other target, and
  the API refuses a port outside 1..65535 in PartyConnect.
- Observations on the server: a body that is not JSON names no field; openapi.json needs the token.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

httpx = pytest.importorskip("httpx")

from sampan.verify.api import PartyConnect  # noqa: E402
from sampan.verify.catalogue.http import Api, ApiCallError  # noqa: E402
from sampan.verify.client import BenchmarkClient  # noqa: E402
from sampan.verify.proxy import RecordingProxy  # noqa: E402


def _serve_once(answer: bytes, drip: bool = False) -> str:
    sock = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        conn, _ = sock.accept()
        try:
            conn.recv(65536)
            if drip:
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                end = time.monotonic() + 10
                while time.monotonic() < end:
                    conn.sendall(b"1\r\n \r\n")
                    time.sleep(0.3)
            else:
                conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n" % len(answer) + answer)
        except OSError:
            pass
        finally:
            conn.close()
            sock.close()

    threading.Thread(target=run, daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_catalogue_api_bounds_the_whole_call() -> None:
    api = Api(_serve_once(b"", drip=True), "t", timeout_s=1.5)
    started = time.monotonic()
    try:
        with pytest.raises(ApiCallError, match="still coming"):
            api.call("GET", "/info")
    finally:
        api.close()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"error": {"code": "conflict", "message": NaN}}'],
                         ids=["nested", "nan"])
def test_catalogue_api_decodes_hostile_bodies_to_none(body: bytes) -> None:
    api = Api(_serve_once(body), "t", timeout_s=5)
    try:
        reply = api.call("GET", "/info")
    finally:
        api.close()
    assert reply.status == 500 and reply.body is None


def test_catalogue_api_transport_failure_is_a_sampan_error() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    api = Api(f"http://127.0.0.1:{port}", "t", timeout_s=5)
    try:
        with pytest.raises(ApiCallError, match="cannot get an answer"):
            api.call("GET", "/info")
    finally:
        api.close()


def test_plain_http_beyond_loopback_is_logged_or_refused(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sampan.verify.bounded"):
        BenchmarkClient("http://platform.example", "t").close()
        Api("http://platform.example", "t").close()
    assert sum("travels in clear" in r.getMessage() for r in caplog.records) == 2
    with pytest.raises(ValueError, match="in clear"):
        BenchmarkClient("http://10.0.0.5:8000", "t", plain_http="refuse")
    with pytest.raises(ValueError, match="in clear"):
        Api("http://platform.example", "t", plain_http="refuse")
    with pytest.raises(ValueError, match="not an http"):
        BenchmarkClient("file:///etc/passwd", "t")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sampan.verify.bounded"):
        BenchmarkClient("http://127.0.0.1:9", "t", plain_http="refuse").close()
        Api("http://localhost:9", "t", plain_http="refuse").close()
        BenchmarkClient("https://platform.example", "t", plain_http="refuse").close()
    assert not caplog.records


def test_proxy_relays_only_to_allowed_hosts() -> None:
    with pytest.raises(ValueError, match="not one the verifier may connect to"):
        RecordingProxy("169.254.169.254:80", allowed_hosts={"platform.example"})
    RecordingProxy("platform.example:7000", allowed_hosts={"Platform.Example"})  # names compare case-blind
    with pytest.raises(ValueError, match="1..65535"):
        RecordingProxy("127.0.0.1:0")


def test_party_connect_port_is_in_range() -> None:
    PartyConnect(address="platform.example:65535", protocol="grpc")
    for bad in ("platform.example:65536", "platform.example:0", "127.0.0.1:99999"):
        with pytest.raises(ValidationError):
            PartyConnect(address=bad, protocol="grpc")


def test_a_body_that_is_not_json_names_no_field() -> None:
    """Observation "odd field value": a JSON decode error gave field "1" (the character position)."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from sampan.verify.server import make_benchmark_app

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verify"))
    from _api_fake_backend import FakeBackend

    with TestClient(make_benchmark_app(FakeBackend(), token="tok")) as api:
        reply = api.post("/bench/v1/projects", content=b"{", headers={"Authorization": "Bearer tok",
                                                                     "Content-Type": "application/json"})
        assert reply.status_code == 422 and reply.json()["error"]["field"] is None, reply.text
        assert api.get("/bench/v1/openapi.json").status_code == 401  # the contract too is behind the token
