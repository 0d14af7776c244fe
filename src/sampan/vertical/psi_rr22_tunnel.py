"""A byte tunnel between two parties' local TCP links, carried as sealed envelopes through the coordinator.

Why: spu's RR22 link (yacl/brpc) wants each party to listen on a port and dial the other. Parties only dial
out, and every byte between two parties must travel sealed through the coordinator. So each party runs spu on
127.0.0.1 and a `Tunnel`: a local listener that stands in for the peer's spu (its own spu dials it), and a dialer
that opens connections to its own spu when the peer's spu opens one. The bytes of every connection are cut into
frames, packed many to an envelope (large frames, few round trips), sealed with the pair's `SealedChannels`
(ChaCha20-Poly1305 bound to the run and direction) and handed to the coordinator's pump (`psi_rr22`).

Fail closed: each envelope carries the session id and a sequence number; a frame that does not authenticate, a
replayed, reordered or dropped envelope, or a malformed frame table stops the tunnel (`TunnelError`), which
aborts the run. Nothing listens beyond 127.0.0.1. The coordinator sees only envelope sizes and timing.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping

import numpy as np

from sampan.vertical.psi_points import PsiError

__all__ = ["Tunnel", "TunnelError"]

OPEN, DATA, CLOSE = 1, 2, 3
_READ = 1 << 20  # bytes per socket read
_BUFFER_LIMIT = 64 << 20  # outgoing bytes held before local readers wait (memory bound)
_CONNECT_SECONDS = 60.0

Seal = Callable[[Mapping[str, np.ndarray]], np.ndarray]
Open = Callable[[np.ndarray], dict[str, np.ndarray]]


class TunnelError(PsiError):
    """The tunnel saw bytes it must not accept (tampered, replayed, out of order, malformed): the run stops."""


class _Stream:
    """One TCP connection through the tunnel: its local socket, and a writer thread fed in order."""

    def __init__(self, key: tuple[bool, int], sock: socket.socket | None) -> None:
        self.key = key  # (opened here, stream id)
        self.sock = sock
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        self.closed = False


class Tunnel:
    """One party's end of the tunnel for one PSI session; `port` is where its own spu dials the peer."""

    def __init__(self, name: str, peer: str, session: bytes, seal: Seal, open_: Open, target_port: int) -> None:
        self.name, self.peer, self.session = name, peer, np.frombuffer(session, dtype=np.uint8).copy()
        self._seal, self._open, self.target_port = seal, open_, target_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        self._cond = threading.Condition()
        self._out: list[tuple[int, int, int, bytes]] = []  # (origin: 0 opened by me, stream, kind, bytes)
        self._out_bytes = 0
        self._streams: dict[tuple[bool, int], _Stream] = {}
        self._next_id = 0
        self._seq_out = 0
        self._seq_in = 0
        self._stopped = False
        self._readers = 0  # local connections still open for reading
        self.bytes_in = self.bytes_out = 0
        threading.Thread(target=self._accept, name=f"rr22-accept-{name}", daemon=True).start()

    # local side ---------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stopped:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._cond:
                sid = self._next_id
                self._next_id += 1
                stream = _Stream((True, sid), sock)
                self._streams[stream.key] = stream
                self._push(0, sid, OPEN, b"")
            self._start(stream)

    def _start(self, stream: _Stream) -> None:
        """A writer thread per connection; its one reader starts here for a connection accepted from our own spu,
        or in the writer once it has dialled our spu for one the peer opened (decided by who opened it, never by
        whether the socket exists yet: the writer may connect before this line runs, and two readers on one
        socket would interleave its bytes)."""
        accepted = stream.key[0]
        if accepted:
            with self._cond:
                self._readers += 1  # counted before the thread runs, so `quiet` never misses it
        threading.Thread(target=self._write_loop, args=(stream,), daemon=True).start()
        if accepted:
            threading.Thread(target=self._read_loop, args=(stream, True), daemon=True).start()

    def _push(self, origin: int, sid: int, kind: int, data: bytes) -> None:
        """Queue one frame (caller holds the lock)."""
        self._out.append((origin, sid, kind, data))
        self._out_bytes += len(data)
        self._cond.notify_all()

    def _read_loop(self, stream: _Stream, counted: bool = False) -> None:
        if not counted:
            with self._cond:
                self._readers += 1
        try:
            self._read(stream)
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    def quiet(self) -> bool:
        """No local connection left to read from and nothing queued: every byte the worker sent has gone."""
        with self._cond:
            return self._readers == 0 and not self._out

    def _read(self, stream: _Stream) -> None:
        origin = 0 if stream.key[0] else 1
        assert stream.sock is not None
        while True:
            try:
                data = stream.sock.recv(_READ)
            except OSError:
                data = b""
            with self._cond:
                while data and self._out_bytes > _BUFFER_LIMIT and not self._stopped:
                    self._cond.wait(0.5)
                if self._stopped:
                    return
                self._push(origin, stream.key[1], DATA if data else CLOSE, data)
            if not data:
                return

    def _write_loop(self, stream: _Stream) -> None:
        if stream.sock is None:  # the peer's spu opened it: dial our own spu (it may still be starting)
            deadline = time.monotonic() + _CONNECT_SECONDS
            while stream.sock is None and not self._stopped:
                try:
                    stream.sock = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                    stream.sock.settimeout(None)
                except OSError:
                    if time.monotonic() > deadline:
                        with self._cond:
                            self._push(1, stream.key[1], CLOSE, b"")
                        return
                    time.sleep(0.05)
            if self._stopped or stream.sock is None:
                return
            with self._cond:
                self._readers += 1
            threading.Thread(target=self._read_loop, args=(stream, True), daemon=True).start()
        while True:
            data = stream.inbox.get()
            if data is None:
                try:
                    stream.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            try:
                stream.sock.sendall(data)
            except OSError:
                return

    # the pump ------------------------------------------------------------------------------------
    def drain(self, wait: float, linger: float = 0.002, max_bytes: int = 16 << 20) -> np.ndarray | None:
        """The next sealed envelope of queued frames, or None when nothing came within `wait` seconds.

        Waits for the first frame, then lingers while more keep arriving, so one envelope carries a burst."""
        deadline = time.monotonic() + wait
        with self._cond:
            while not self._out and time.monotonic() < deadline and not self._stopped:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
            if not self._out:
                return None
            settle = time.monotonic() + linger
            while self._out_bytes < max_bytes and time.monotonic() < settle:
                before = len(self._out)
                self._cond.wait(linger)
                if len(self._out) == before:
                    break
            frames: list[tuple[int, int, int, bytes]] = []
            size = 0
            while self._out and (not frames or size + len(self._out[0][3]) <= max_bytes):
                frame = self._out.pop(0)
                frames.append(frame)
                size += len(frame[3])
            self._out_bytes -= size
            self._cond.notify_all()
        head = np.array([[o, s, k, len(d)] for o, s, k, d in frames], dtype=np.uint64).reshape(-1, 4)
        data = np.frombuffer(b"".join(d for *_, d in frames), dtype=np.uint8)
        meta = np.array([self._seq_out], dtype=np.uint64)
        self._seq_out += 1
        self.bytes_out += len(data)
        return self._seal({"session": self.session, "seq": meta, "head": head, "data": data})

    def feed(self, envelope: np.ndarray) -> None:
        """Open one envelope from the peer and hand its frames to the local connections, in order."""
        try:
            arrays = self._open(envelope)
        except Exception:
            raise TunnelError(f"party {self.name!r}: a tunnel envelope from {self.peer!r} does not "
                              "authenticate; the RR22 run stops") from None
        try:
            session, seq, head, data = (arrays[k] for k in ("session", "seq", "head", "data"))
        except KeyError:
            raise TunnelError(f"party {self.name!r}: malformed tunnel envelope from {self.peer!r}") from None
        if not np.array_equal(session, self.session):
            raise TunnelError(f"party {self.name!r}: tunnel envelope from {self.peer!r} belongs to another session")
        if seq.shape != (1,) or int(seq[0]) != self._seq_in:
            raise TunnelError(f"party {self.name!r}: tunnel envelope from {self.peer!r} out of order "
                              f"(replayed, reordered or dropped)")
        lengths = head[:, 3].astype(np.int64) if head.ndim == 2 and head.shape[1] == 4 else None
        if lengths is None or data.ndim != 1 or int(lengths.sum()) != len(data):
            raise TunnelError(f"party {self.name!r}: malformed tunnel frames from {self.peer!r}")
        self._seq_in += 1
        self.bytes_in += len(data)
        raw = data.tobytes()
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        for (origin, sid, kind, _), lo, hi in zip(head.tolist(), offsets[:-1].tolist(), offsets[1:].tolist(),
                                                   strict=True):
            self._deliver(origin == 1, int(sid), int(kind), raw[lo:hi])

    def _deliver(self, opened_here: bool, sid: int, kind: int, data: bytes) -> None:
        key = (opened_here, sid)
        with self._cond:
            stream = self._streams.get(key)
            if kind == OPEN:
                if opened_here or stream is not None:
                    raise TunnelError(f"party {self.name!r}: {self.peer!r} reopened tunnel stream {sid}")
                stream = _Stream(key, None)
                self._streams[key] = stream
                self._start(stream)
                return
        if stream is None or kind not in (DATA, CLOSE):
            raise TunnelError(f"party {self.name!r}: tunnel frame for an unknown stream from {self.peer!r}")
        if stream.closed:
            return
        if kind == CLOSE:
            stream.closed = True
            stream.inbox.put(None)
        elif data:
            stream.inbox.put(data)

    def close(self) -> None:
        """Stop accepting, close every local connection, wake every waiter."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            streams = list(self._streams.values())
        try:
            self._listener.close()
        except OSError:
            pass
        for stream in streams:
            stream.inbox.put(None)
            if stream.sock is not None:
                try:
                    stream.sock.close()
                except OSError:
                    pass
