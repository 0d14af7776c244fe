"""R16-API-9..11: a platform under test against the RecordingProxy (the verifier's wire meter).

- API-9: every read appends a (t, direction, n) tuple to the connection's `series`, with no bound. A platform
  that trickles its answer in tiny segments (or ping-pongs single bytes with the party) grows the verifier's
  memory by ~100 bytes per segment for the whole job (tens of thousands per second here: GBs over a 600 s job),
  and every `snapshot()` copies the lot under the lock the relay needs. The capture is bounded; the series is
  not. A bounded series (e.g. per-direction time buckets) keeps `bytes_between` usable.
- API-10: a platform that stops reading while the party still has bytes queued makes `stop()` take its full
  10 s and leave the relay tasks pending (their sockets open): `writer.close()` waits for the unsent buffer
  and `wait_closed()` is awaited after the cancellation. `stop()` should abort such transports.
- API-11: a target port over 65535 passes the constructor (`PartyConnect.address` allows 5 digits too); every
  connection then dies in an unhandled OverflowError (a traceback in the log) and the record shows no error:
  a failed connection reads as an empty, clean one.
Fixed: these are regular tests now."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from sampan.verify.proxy import RecordingProxy


def _listener() -> tuple[socket.socket, str]:
    sock = socket.create_server(("127.0.0.1", 0))
    return sock, f"127.0.0.1:{sock.getsockname()[1]}"


def test_series_memory_is_bounded_under_a_trickle() -> None:
    listener, address = _listener()

    def echo() -> None:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)
        listener.close()

    threading.Thread(target=echo, daemon=True).start()
    with RecordingProxy(address) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port)) as party:
            party.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            trips, end = 0, time.monotonic() + 4
            while time.monotonic() < end:
                party.sendall(b"x")
                party.recv(1)
                trips += 1
        snap = proxy.snapshot()
    (conn,) = snap.connections
    if trips < 5000:
        pytest.skip(f"only {trips} round trips in 4 s: the machine is too busy for this test to mean anything")
    assert conn.bytes_up == conn.bytes_down == trips  # the counts themselves are exact
    assert len(conn.series) <= 4096, f"{len(conn.series)} series entries for {trips} one-byte round trips"


def test_stop_is_prompt_when_the_platform_stops_reading() -> None:
    listener, address = _listener()
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()  # never reads
    proxy = RecordingProxy(address).start()
    party = socket.create_connection(("127.0.0.1", proxy.port))
    party.setblocking(False)
    end = time.monotonic() + 2
    while time.monotonic() < end:  # fill every buffer between the party and the silent platform
        try:
            party.send(b"u" * 65536)
        except BlockingIOError:
            time.sleep(0.01)
    started = time.monotonic()
    proxy.stop()
    took = time.monotonic() - started
    party.close()
    for sock in held + [listener]:
        sock.close()
    assert took < 3, f"stop() took {took:.1f} s"


def test_a_port_out_of_range_is_refused_or_recorded() -> None:
    try:
        proxy = RecordingProxy("127.0.0.1:99999")
    except ValueError:
        return  # refused up front: correct
    with proxy:
        with socket.create_connection(("127.0.0.1", proxy.port)) as party:
            party.settimeout(3)
            party.sendall(b"hello")
            try:
                party.recv(10)
            except OSError:
                pass
        time.sleep(0.3)
        (conn,) = proxy.snapshot().connections
    assert conn.error is not None, "the connection failed but its record shows no error"
