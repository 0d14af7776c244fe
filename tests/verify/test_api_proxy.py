"""RecordingProxy: exact byte counts both ways, timing, bounded capture of plaintext, HTTP through it."""

from __future__ import annotations

import socket
import threading

import pytest

from sampan.verify.proxy import RecordingProxy


class _Server:
    """A TCP server that reads exactly `expect` bytes, answers `reply` bytes, then closes."""

    def __init__(self, expect: int, reply: bytes) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.expect, self.reply, self.received = expect, reply, b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            while len(self.received) < self.expect:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                self.received += chunk
            conn.sendall(self.reply)
        self.sock.close()


def _exchange(address: str, payload: bytes) -> bytes:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as s:
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # the proxy may already have closed (an unreachable target): the reply is then empty
            return b""
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_counts_every_byte_each_way_exactly() -> None:
    up = bytes(range(256)) * 4000 + b"tail"  # 1,024,004 bytes: many reads
    down = b"D" * 300_001
    server = _Server(len(up), down)
    with RecordingProxy(server.address) as proxy:
        assert _exchange(proxy.address, up) == down
        server.thread.join(5)
        for _ in range(200):
            snap = proxy.snapshot()
            if snap.connections and snap.connections[0].closed is not None:
                break
            threading.Event().wait(0.01)
    assert server.received == up
    (conn,) = snap.connections
    assert (conn.bytes_up, conn.bytes_down) == (len(up), len(down))
    assert (snap.bytes_up, snap.bytes_down) == (len(up), len(down))
    assert sum(n for _, d, n in conn.series if d == "up") == len(up)
    assert sum(n for _, d, n in conn.series if d == "down") == len(down)
    assert conn.first_up is not None and conn.last_up is not None and conn.first_down is not None
    assert conn.opened <= conn.first_up <= conn.last_up <= conn.first_down
    assert conn.closed is not None and conn.error is None
    assert snap.bytes_between(0, proxy.now() + 1) == {"up": len(up), "down": len(down)}
    assert conn.captured_up == b""  # capture is off by default


def test_capture_keeps_plaintext_bounded() -> None:
    secret = b'{"gradient": [0.125, -3.5], "party": "verifier"}'
    server = _Server(len(secret) + 5000, b"ok")
    with RecordingProxy(server.address, capture=True, capture_bytes=1000) as proxy:
        assert _exchange(proxy.address, secret + b"x" * 5000) == b"ok"
        server.thread.join(5)
        threading.Event().wait(0.1)
        snap = proxy.snapshot()
    assert secret in snap.captured("up") and snap.captured("down") == b"ok"
    (conn,) = snap.connections
    assert len(conn.captured_up) == 1000 and conn.truncated and conn.bytes_up == len(secret) + 5000


def test_an_unreachable_target_is_recorded_not_raised() -> None:
    free = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{free.getsockname()[1]}"
    free.close()
    with RecordingProxy(address) as proxy:
        assert _exchange(proxy.address, b"hello") == b""
        threading.Event().wait(0.1)
        (conn,) = proxy.snapshot().connections
    assert conn.error is not None and conn.bytes_down == 0


def test_http_through_the_proxy() -> None:
    pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    from _api_fake_backend import FakeBackend

    from sampan.verify.client import BenchmarkClient
    from sampan.verify.serve_local import serve_app
    from sampan.verify.server import make_benchmark_app

    with serve_app(make_benchmark_app(FakeBackend(), token="tok")) as server, \
            RecordingProxy(server.url.removeprefix("http://"), capture=True) as proxy, \
            BenchmarkClient(f"http://{proxy.address}", "tok") as client:
        assert client.info().platform == "fake"
        snap = proxy.snapshot()
    assert b"GET /bench/v1/info" in snap.captured("up") and b'"platform":"fake"' in snap.captured("down")
    assert snap.bytes_up == len(snap.captured("up")) and snap.bytes_down == len(snap.captured("down"))


def test_bad_target() -> None:
    with pytest.raises(ValueError, match="host:port"):
        RecordingProxy("nohost")
