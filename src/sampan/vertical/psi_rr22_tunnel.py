"""A byte tunnel between two parties' local TCP links, carried as sealed envelopes through the coordinator.

Why: spu's RR22 link (yacl/brpc) wants each party to listen on a port and dial the other. Parties only dial
out, and every byte between two parties must travel sealed through the coordinator. So each party runs spu on
127.0.0.1 and a `Tunnel`: a local listener that stands in for the peer's spu (its own spu dials it), and a dialer
that opens connections to its own spu when the peer's spu opens one. The bytes of every connection are cut into
frames, packed many to an envelope (large frames, few round trips), sealed with the pair's `SealedChannels`
(ChaCha20-Poly1305 bound to the run and direction) and handed to the coordinator's pump (`psi_rr22`).

Fail closed: each envelope carries the session id and a sequence number; a frame that does not authenticate, a
replayed, reordered or dropped envelope (the sequence check and the delivery are one step under a lock, so
two concurrent pumps cannot both pass it), a malformed frame table (every length checked, not only their sum),
more than `MAX_STREAMS` streams opened by the peer, or more than `_BUFFER_LIMIT` inbound bytes the local spu
does not take within `_INBOUND_WAIT` seconds stops the tunnel (`TunnelError`), which aborts the run; bytes for a
stream whose local connection is gone are dropped, not held, and a queued inbound frame keeps at most twice its
own size alive (`_frame`: a small frame is copied out of its envelope, R15-RR22B-1). Nothing listens beyond
127.0.0.1, and the tunnel relays only its own spu worker's connections and dials only a listener the worker
holds (`psi_rr22_local`: the kernel's socket table, since brpc cannot present a token); another local process's
connection is closed unrelayed, unknown to the peer. The coordinator sees only envelope sizes and timing.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping

import numpy as np

from sampan.vertical.psi_points import PsiError
from sampan.vertical.psi_rr22_local import connection_owned_by, listener_owned_by

__all__ = ["Tunnel", "TunnelError"]

OPEN, DATA, CLOSE = 1, 2, 3
_READ = 1 << 20  # bytes per socket read
_LARGE = 64 << 10  # a frame this large is likely part of a large message: `drain` lingers for the rest
_BUFFER_LIMIT = 64 << 20  # outgoing bytes held before local readers wait (memory bound)
_CONNECT_SECONDS = 60.0
_INBOUND_WAIT = 30.0  # seconds `feed` waits for the local spu to take inbound bytes beyond the limit
_WORKER_WAIT = 10.0  # seconds an accepted connection waits for the worker's pid to be known
MAX_STREAMS = 32  # connections either side may open per session (spu's link uses a handful)
MAX_FRAMES = 1 << 16  # frames per envelope

Seal = Callable[[Mapping[str, np.ndarray]], np.ndarray]
Open = Callable[[np.ndarray], dict[str, np.ndarray]]


class TunnelError(PsiError):
    """The tunnel saw bytes it must not accept (tampered, replayed, out of order, malformed): the run stops."""


class _Stream:
    """One TCP connection through the tunnel: its local socket, and a writer thread fed in order."""

    def __init__(self, key: tuple[bool, int], sock: socket.socket | None) -> None:
        self.key = key  # (opened here, stream id)
        self.sock = sock
        self.inbox: queue.Queue[bytes | memoryview | None] = queue.Queue()
        self.closed = False  # the peer closed it, or its local connection failed: later bytes are dropped


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
        self._in_bytes = 0  # inbound bytes queued for local connections (bounded by _BUFFER_LIMIT)
        self._opened = {True: 0, False: 0}  # streams opened here / by the peer (each bounded by MAX_STREAMS)
        self._feed_lock = threading.Lock()
        self.worker_pid: int | None = None
        self.bytes_in = self.bytes_out = 0
        threading.Thread(target=self._accept, name=f"rr22-accept-{name}", daemon=True).start()

    def bind_worker(self, pid: int) -> None:
        """The party's own spu worker: the only process whose connections are relayed and whose listener is dialled."""
        with self._cond:
            self.worker_pid = pid
            self._cond.notify_all()

    def _worker(self) -> int | None:
        with self._cond:
            deadline = time.monotonic() + _WORKER_WAIT
            while self.worker_pid is None and not self._stopped and time.monotonic() < deadline:
                self._cond.wait(0.1)
            return self.worker_pid

    # local side ---------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stopped:
            try:
                sock, address = self._listener.accept()
            except OSError:
                return
            if not connection_owned_by(self._worker(), int(address[1]), self.port):
                sock.close()  # another local process: never relayed, the peer hears nothing of it
                continue
            with self._cond:
                if self._opened[True] >= MAX_STREAMS:
                    sock.close()
                    continue
                self._opened[True] += 1
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
                    sock = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                    if not listener_owned_by(self._worker(), self.target_port):
                        sock.close()  # a squatter on the worker's port: never hand it the peer's bytes
                        raise OSError("not the worker's listener")
                    sock.settimeout(None)
                    stream.sock = sock
                except OSError:
                    if time.monotonic() > deadline:
                        with self._cond:
                            self._push(1, stream.key[1], CLOSE, b"")
                        self._drop(stream, 0)
                        return
                    time.sleep(0.05)
            if self._stopped or stream.sock is None:
                self._drop(stream, 0)
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
                self._drop(stream, len(data))
                return
            with self._cond:
                self._in_bytes -= len(data)
                self._cond.notify_all()

    def _drop(self, stream: _Stream, pending: int) -> None:
        """The local connection failed: forget what is queued for it and drop whatever the peer sends it later."""
        with self._cond:
            stream.closed = True
            while True:
                try:
                    item = stream.inbox.get_nowait()
                except queue.Empty:
                    break
                pending += len(item or b"")
            self._in_bytes -= pending
            self._cond.notify_all()

    # the pump ------------------------------------------------------------------------------------
    def drain(self, wait: float, linger: float = 0.002, max_bytes: int = 16 << 20,
              settle: float | None = None) -> np.ndarray | None:
        """The next sealed envelope of queued frames, or None when nothing came within `wait` seconds.

        Waits for the first frame, then lingers while more keep arriving, so one envelope carries a burst; it
        lingers only while the last frame is large (`_LARGE`: the rest of a large message is likely on its way);
        after a short frame the envelope goes at once, as most messages (acknowledgements, protocol steps) are
        short and whole, and the peer waits for them (a linger of 2 ms per hop was ~2 s at 10M ids).
        With `settle`, it also stops waiting `settle` seconds after the local spu has taken every inbound byte:
        an answer to what the peer sent comes within that time or in a later pump, so a one-way message (an
        acknowledgement, a slice of a large message) does not hold the pump for the whole `wait`."""
        deadline = time.monotonic() + wait
        with self._cond:
            flushed: float | None = None  # when the inbound bytes were last seen all taken
            while not self._out and not self._stopped:
                now = time.monotonic()
                limit = deadline
                if settle is not None and self._in_bytes <= 0:
                    flushed = now if flushed is None else flushed
                    limit = min(deadline, flushed + settle)
                else:
                    flushed = None
                if now >= limit:
                    break
                self._cond.wait(limit - now)
            if not self._out:
                return None
            settle = time.monotonic() + linger
            while self._out_bytes < max_bytes and time.monotonic() < settle and self._filling():
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
            # numbered in the same locked step that takes the frames (R15-RR22B-2): two concurrent pumps
            # cannot number their envelopes against the order of the frames they took
            meta = np.array([self._seq_out], dtype=np.uint64)
            self._seq_out += 1
            self.bytes_out += size
            self._cond.notify_all()
        head = np.array([[o, s, k, len(d)] for o, s, k, d in frames], dtype=np.uint64).reshape(-1, 4)
        data = np.frombuffer(b"".join(d for *_, d in frames), dtype=np.uint8)
        return self._seal({"session": self.session, "seq": meta, "head": head, "data": data})

    def _filling(self) -> bool:
        """The last queued frame is large: more of its message is likely still in the socket."""
        return bool(self._out) and self._out[-1][2] == DATA and len(self._out[-1][3]) >= _LARGE

    def feed(self, envelope: np.ndarray) -> None:
        """Open one envelope from the peer and hand its frames to the local connections, in order; one at a time
        (the sequence number is checked and advanced with the frames' delivery under one lock)."""
        with self._feed_lock:
            self._feed(envelope)

    def _feed(self, envelope: np.ndarray) -> None:
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
        if not self._well_formed(head, data):
            raise TunnelError(f"party {self.name!r}: malformed tunnel frames from {self.peer!r}")
        lengths = head[:, 3].astype(np.int64)  # each <= len(data) < 2^63: no wrap
        opens = int((head[:, 2] == OPEN).sum())
        if self._opened[False] + opens > MAX_STREAMS:
            raise TunnelError(f"party {self.name!r}: {self.peer!r} opened more than {MAX_STREAMS} tunnel streams")
        self._seq_in += 1
        self.bytes_in += len(data)
        raw = np.ascontiguousarray(data, dtype=np.uint8).data
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        for (origin, sid, kind, _), lo, hi in zip(head.tolist(), offsets[:-1].tolist(), offsets[1:].tolist(),
                                                   strict=True):
            self._deliver(origin == 1, int(sid), int(kind), self._frame(raw, lo, hi))

    @staticmethod
    def _frame(raw: memoryview, lo: int, hi: int) -> bytes | memoryview:
        """A frame's bytes: a view of the envelope (no copy) only when the frame is at least half of it, else a
        copy. A queued view keeps its whole envelope alive while only the frame counts against `_BUFFER_LIMIT`,
        so a partner could pin any amount of memory with 1-byte frames (R15-RR22B-1); with this rule the bytes
        held stay within twice the bytes counted, and the copies made add up to at most half an envelope
        (`open_arrays` copies `data` out of the plaintext, so a view pins only the frames' bytes, not the head)."""
        return raw[lo:hi] if 2 * (hi - lo) >= len(raw) else bytes(raw[lo:hi])

    @staticmethod
    def _well_formed(head: np.ndarray, data: np.ndarray) -> bool:
        """A frame table an honest tunnel writes: (n, 4) uint64, origin 0/1, a known kind, and each length within
        the data (checked one by one: a wrapped uint64 must not cancel another in the sum)."""
        if head.dtype != np.uint64 or head.ndim != 2 or head.shape[1] != 4 or len(head) > MAX_FRAMES:
            return False
        if data.dtype != np.uint8 or data.ndim != 1:
            return False
        lengths = head[:, 3]
        if (lengths > np.uint64(len(data))).any() or (head[:, 0] > 1).any():
            return False
        if not np.isin(head[:, 2], np.array([OPEN, DATA, CLOSE], dtype=np.uint64)).all():
            return False
        return sum(int(n) for n in lengths.tolist()) == len(data)

    def _deliver(self, opened_here: bool, sid: int, kind: int, data: bytes | memoryview) -> None:
        key = (opened_here, sid)
        with self._cond:
            stream = self._streams.get(key)
            if kind == OPEN:
                if opened_here or stream is not None:
                    raise TunnelError(f"party {self.name!r}: {self.peer!r} reopened tunnel stream {sid}")
                self._opened[False] += 1
                stream = _Stream(key, None)
                self._streams[key] = stream
                self._start(stream)
                return
        if stream is None or kind not in (DATA, CLOSE):
            raise TunnelError(f"party {self.name!r}: tunnel frame for an unknown stream from {self.peer!r}")
        with self._cond:
            if stream.closed:
                return  # its local connection is gone (or the peer closed it): drop, never hold
            if kind == CLOSE:
                stream.closed = True
                stream.inbox.put(None)
                return
            if not data:
                return
            deadline = time.monotonic() + _INBOUND_WAIT
            while self._in_bytes + len(data) > _BUFFER_LIMIT and self._in_bytes and not self._stopped:
                if time.monotonic() > deadline:
                    raise TunnelError(f"party {self.name!r}: {self.peer!r} sent more than {_BUFFER_LIMIT >> 20} MB "
                                      "the local RR22 link did not take; the RR22 run stops")
                self._cond.wait(0.5)
            if stream.closed or self._stopped:
                return
            self._in_bytes += len(data)
            stream.inbox.put(data)

    def close(self) -> None:
        """Stop accepting, close every local connection, wake every waiter."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            streams = list(self._streams.values())
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept thread (close alone leaves it blocked)
        except OSError:
            pass
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
