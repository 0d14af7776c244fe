"""RR22 PSI, a party's side: side files, the spu worker subprocess, its tunnel, and the result mapped to rows.

Why apart: this runs inside each party, next to its `PsiParty` (whose ids, channels and result slots it shares,
so star alignment and training read an RR22 result exactly like an ECDH one). The ids leave this process only
as a private side file for the party's own spu worker: each normalised id (as it is, or in hex when it holds a
byte outside a plain set: `psi_rr22_codec`) and its row, in a temp dir only this user can read (0700), removed
with everything spu wrote there (and the trace spu writes to /tmp) when the session closes, fails or times out.
The worker's process group is killed.

The party bounds what its peer and the coordinator choose (review R15-RR22-1/2/3/7/9): the id width the peer
declares is at most `MAX_ID_BYTES` (256, the ECDH ids cap; it sizes the party's padded arrays, not its side file);
a second offer or accept with a peer whose session is live ends both; a second start is refused and leaves the
running session as it is (R15-PSI2-6); the session's deadline is the coordinator's `timeout` capped at the party's
own `max_seconds` (a non-finite or non-positive one is refused), counted at the label holder from the offer (the
start may shorten it, never push it later: R15-PSI2-4); a deadline that comes while the start is launching waits
for it and then undoes all of it, tunnel and worker included (R15-PSI2-5); `finish` waits at most `FINISH_WAIT`
seconds for the worker. The worker dies with the party: it watches a pipe from the party and, when the pipe
closes (the party exited or was killed), removes its own folder and exits; a
party's start also sweeps `sampan-rr22-*` folders of this user's dead parties (a host that rebooted mid-run).

Split by job: `psi_rr22_codec` holds the id bytes (side file, tokens, result to rows), `psi_rr22_session` one
session's lifetime (folder, worker, tunnel, deadline, close); this module holds the handlers, which decide what
the peer and the coordinator may ask, and launch a session's worker.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sampan.vertical import psi_rr22_codec as codec
from sampan.vertical.psi_ids import MAX_ID_BYTES
from sampan.vertical.psi_points import PsiError
from sampan.vertical.psi_rr22 import refuse_unsupported, spu_python
from sampan.vertical.psi_rr22_local import sweep_stale
from sampan.vertical.psi_rr22_session import MAX_SECONDS, Rr22Session, deadline_seconds
from sampan.vertical.psi_rr22_tunnel import Tunnel
from sampan.wire import Message

if TYPE_CHECKING:
    from sampan.vertical.psi_party import PsiParty

__all__ = ["Rr22Party", "register_rr22"]

WORKER = Path(__file__).with_name("_rr22_worker.py")
FINISH_WAIT = 2.0  # seconds `finish` waits for a worker (it has exited when the pump reported done)
# the codec's functions under the private names tests and older callers import from here
_padded, _tokens, _locate = codec.padded, codec.tokens, codec.locate
_write_ids, _read_result = codec.write_ids, codec.read_result


def _compact(psi: PsiParty) -> tuple[np.ndarray, str]:
    """The party's validated ids as a fixed-width bytes array and their public shape (either PsiParty form)."""
    prepared: Any = psi._prepare()
    if hasattr(prepared, "ids") and hasattr(prepared, "shape"):
        return np.asarray(prepared.ids), str(prepared.shape)
    _, encoded, shape = prepared
    return np.array(encoded, dtype=bytes), str(shape)


class _Replayed(PsiError):
    """A replayed start: refused, and the session it names is left running (its worker is not replaced)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pump_seconds(party: str, field: str, asked: Any) -> float:
    """A pump's `wait`: an int or float (not a bool), finite and >= 0, else refused (R15-RR22B-3: the string
    "nan" became NaN through `float`, passed the 1 s cap, and spun the handler in `drain`)."""
    value = float(asked) if isinstance(asked, (int, float)) and not isinstance(asked, bool) else math.nan
    if not math.isfinite(value) or value < 0:
        raise PsiError(f"party {party!r}: RR22 pump {field} {asked!r} is not a finite number of seconds >= 0")
    return value


class Rr22Party:
    """The RR22 handlers of one party; results land in its `PsiParty` as ECDH results do."""

    def __init__(self, psi: PsiParty, max_seconds: float = MAX_SECONDS) -> None:
        self.psi = psi
        self.max_seconds = float(max_seconds)
        self.sessions: dict[str, Rr22Session] = {}
        sweep_stale()

    def register(self, app: Any) -> Rr22Party:
        for kind, handler in (("psi.rr22.offer", self._offer), ("psi.rr22.accept", self._accept),
                              ("psi.rr22.start", self._start), ("psi.rr22.pump", self._pump),
                              ("psi.rr22.finish", self._finish), ("psi.rr22.close", self._close)):
            app.register(kind, self._guarded(handler))
        return self

    def _guarded(self, handler: Any) -> Any:
        """Any failure ends the session here (worker killed, files removed) before the error goes back."""
        def run(request: Message) -> Message:
            try:
                return handler(request)
            except _Replayed:
                raise  # refused before touching the live session (R15-PSI2-6): it goes on as it was
            except BaseException:
                session = self.sessions.pop(str(request.meta.get("peer")), None)
                if session is not None:
                    session.close()
                raise
        return run

    # helpers
    @property
    def name(self) -> str:
        return self.psi.name

    def _session(self, peer: str, role: str) -> Rr22Session:
        session = self.sessions.get(peer)
        if session is None or session.role != role or session.closed:
            raise PsiError(f"party {self.name!r}: no RR22 PSI session with {peer!r} in progress")
        return session

    def _fresh(self, peer: str) -> None:
        """Refuse to start a second session with a peer while one is live (a replayed offer or accept); the
        guard then closes the live one too, so nothing it started outlives the refusal."""
        live = self.sessions.get(peer)
        if live is not None and not live.closed:
            raise PsiError(f"party {self.name!r}: an RR22 PSI session with {peer!r} is already in progress; "
                           "a second one is refused and both are closed")

    def _width(self, peer: str, declared: Any) -> int:
        """The peer's declared id width: an int within the ECDH ids cap, else a clear error (it sizes our file)."""
        if isinstance(declared, bool) or not isinstance(declared, (int, np.integer)) or \
                not 1 <= int(declared) <= MAX_ID_BYTES:
            raise PsiError(f"party {self.name!r}: {peer!r} declared an RR22 id width of {declared!r} bytes; ids are "
                           f"at most {MAX_ID_BYTES} bytes long")
        return int(declared)

    def _seconds(self, request: Message) -> float:
        """The session's deadline: the coordinator's timeout, capped at this party's own maximum."""
        return deadline_seconds(request.meta.get("timeout", self.max_seconds), self.max_seconds, self.name)

    def _launch(self, session: Rr22Session, request: Message) -> None:
        """Write the side file, start the tunnel and the worker (own process group, tied to this process by a
        pipe), arm the deadline.

        All under the session's lock (review R15-PSI2-5): a deadline or close that comes meanwhile waits, then
        undoes everything made here, tunnel and worker included; a session closed before it is refused. A local
        file error goes back as a PsiError naming the party, never the private path."""
        python = spu_python()
        seconds = self._seconds(request)
        with session.lock:
            if session.closed:
                raise PsiError(f"party {self.name!r}: the RR22 PSI session with {session.peer!r} has ended "
                               "(deadline or close) before its worker started")
            session.started = True
            try:
                self._spawn(session, python)
            except OSError as exc:
                raise PsiError(f"party {self.name!r}: could not prepare the RR22 worker "
                               f"({exc.strerror or type(exc).__name__})") from None
            session.arm_no_later(seconds)  # never past a deadline already set (A's runs from the offer)

    def _spawn(self, session: Rr22Session, python: Path) -> None:
        """`_launch`'s files, tunnel and worker (the caller holds the session's lock)."""
        directory = session.folder()
        if session.writer is not None:
            session.writer.join()
        if not session.written:  # no side file yet (the file does not depend on the width both pad to)
            codec.write_ids(directory / "ids.csv", _compact(self.psi)[0], session.width)
            session.written = session.width
        channels = self.psi._channels()
        peer = session.peer
        spu_port = _free_port()
        session.tunnel = Tunnel(self.name, peer, session.session,
                                lambda arrays: channels.seal_arrays(peer, arrays),
                                lambda envelope: channels.open_arrays(peer, envelope), spu_port)
        rank = 0 if session.role == "a" else 1
        hosts = {rank: f"127.0.0.1:{spu_port}", 1 - rank: f"127.0.0.1:{session.tunnel.port}"}
        config = {"rank": rank, "link_id": session.session.hex(), "receiver_rank": 0,
                  "parties": [["receiver", hosts[0]], ["sender", hosts[1]]],
                  "broadcast_result": session.mode == "both", "key": "id",
                  "input": str(directory / "ids.csv"), "output": str(directory / "out.csv"),
                  "report": str(directory / "report.json")}
        (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(directory), "HOME": str(directory),
               "LC_ALL": "C"}
        with open(directory / "worker.log", "wb") as log:
            session.process = subprocess.Popen(  # noqa: S603 - fixed argv: spu's python and our worker script
                [str(python), str(WORKER), str(directory / "config.json")], cwd=directory, env=env,
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        session.tunnel.bind_worker(session.process.pid)

    def _write_early(self, session: Rr22Session, ids: np.ndarray) -> None:
        """A's side file at its own width, in the background while B writes its own (the usual case: both widths
        agree, so `_launch` finds it done); a failure leaves `written` at 0 and `_launch` writes it again.

        The folder is made and the writer started under the session's lock, on a live session only, so a close
        (deadline, request) sees either nothing or a started writer, which it joins before removing the folder;
        the writer also skips a closed session and removes its file if the session closed while it wrote
        (review R15-PSI2-1)."""
        width = session.width

        def write() -> None:
            if session.closed:
                return
            target = directory / "ids.csv"
            try:
                codec.write_ids(target, ids, width)
                session.written = width
            except OSError:
                session.written = 0
            if session.closed:
                target.unlink(missing_ok=True)

        with session.lock:
            if session.closed:
                raise PsiError(f"party {self.name!r}: the RR22 PSI session with {session.peer!r} has ended "
                               "(deadline or close)")
            directory = session.folder()
            session.writer = threading.Thread(target=write, name=f"rr22-ids-{self.name}", daemon=True)
            session.writer.start()

    def _check_shapes(self, peer: str, peer_shape: str, check: bool) -> None:
        mine = _compact(self.psi)[1]
        if check and peer_shape != mine:
            raise PsiError(f"party {self.name!r}: customer id formats differ: {self.name!r} ids look like "
                           f"{mine!r}, {peer!r} ids look like {peer_shape!r}; normalise the id column at both "
                           f"parties (or run with check_format=False)")

    # handlers (A: label holder = spu receiver, B: partner = spu sender)
    def _offer(self, request: Message) -> Message:
        peer, mode = str(request.meta["peer"]), str(request.meta.get("mode"))
        refuse_unsupported(mode)
        spu_python()
        channels = self.psi._channels()
        channels.require_role(self.name, "label_holder", "to play the label holder's side of PSI")
        ids, shape = _compact(self.psi)
        self._fresh(peer)
        session = Rr22Session(peer, "a", mode, os.urandom(16), width=ids.dtype.itemsize)
        seconds = self._seconds(request)
        self.sessions[peer] = session
        self._write_early(session, ids)
        session.arm(seconds)  # the early side file, too, goes at the deadline (armed once it exists)
        inner = Message(request.run_id, request.step, self.name, peer, "psi.rr22.offer",
                        {"session": np.frombuffer(session.session, dtype=np.uint8)},
                        {"mode": mode, "n": len(ids), "shape": shape, "width": session.width})
        return request.reply("psi.rr22.offer", {"envelope": channels.seal(peer, inner)}, {"n": len(ids)})

    def _accept(self, request: Message) -> Message:
        peer, mode = str(request.meta["peer"]), str(request.meta.get("mode"))
        refuse_unsupported(mode)
        spu_python()
        channels = self.psi._channels()
        channels.require_role(peer, "label_holder", "PSI")
        inner = channels.open(peer, request.arrays["envelope"])
        if inner.kind != "psi.rr22.offer" or inner.meta.get("mode") != mode:
            raise PsiError(f"party {self.name!r}: {peer!r} offered {inner.kind!r} mode {inner.meta.get('mode')!r}, "
                           f"the coordinator asked for RR22 mode {mode!r}")
        ids, shape = _compact(self.psi)
        self._check_shapes(peer, str(inner.meta.get("shape")), bool(request.meta.get("check_format", True)))
        width = max(ids.dtype.itemsize, self._width(peer, inner.meta.get("width")))
        self._fresh(peer)
        session = Rr22Session(peer, "b", mode, bytes(np.asarray(inner.arrays["session"], dtype=np.uint8)),
                               width=width)
        self.psi.peer_sizes[peer] = int(inner.meta["n"])
        self.sessions[peer] = session
        self._launch(session, request)
        reply = Message(request.run_id, request.step, self.name, peer, "psi.rr22.accept", {},
                        {"n": len(ids), "shape": shape, "width": width})
        return request.reply("psi.rr22.accept", {"envelope": channels.seal(peer, reply)}, {"n": len(ids)})

    def _start(self, request: Message) -> Message:
        peer = str(request.meta["peer"])
        session = self._session(peer, "a")
        with session.lock:  # claimed at once: a replay, even one racing the first start, changes nothing
            if session.started:
                raise _Replayed(f"party {self.name!r}: the RR22 PSI session with {peer!r} has already started; "
                                "a second start is refused (the running one is left as it is)")
            session.started = True
        inner = self.psi._channels().open(peer, request.arrays["envelope"])
        if inner.kind != "psi.rr22.accept":
            raise PsiError(f"party {self.name!r}: expected 'psi.rr22.accept' from {peer!r}, got {inner.kind!r}")
        self._check_shapes(peer, str(inner.meta.get("shape")), bool(request.meta.get("check_format", True)))
        session.width = max(session.width, self._width(peer, inner.meta.get("width")))
        self.psi.peer_sizes[peer] = int(inner.meta["n"])
        self._launch(session, request)
        return request.reply("psi.rr22.start")

    def _pump(self, request: Message) -> Message:
        peer = str(request.meta["peer"])
        session = self.sessions.get(peer)
        if session is None or session.closed or session.tunnel is None or session.process is None:
            raise PsiError(f"party {self.name!r}: no RR22 PSI session with {peer!r} in progress")
        asked = _pump_seconds(self.name, "wait", request.meta.get("wait", 0.005))  # before the envelope is fed
        settle = request.meta.get("settle")
        if "envelope" in request.arrays:
            session.tunnel.feed(request.arrays["envelope"])
        code = session.process.poll()
        if code not in (None, 0):
            raise PsiError(f"party {self.name!r}: the RR22 worker failed ({session.worker_error()})")
        wait = 0.0 if code == 0 else min(asked, 1.0)
        settle = min(float(settle), wait) if isinstance(settle, (int, float)) and not isinstance(settle, bool) \
            and settle >= 0 else None
        envelope = session.tunnel.drain(wait, settle=settle)
        done = code == 0 and envelope is None and session.tunnel.quiet()
        return request.reply("psi.rr22.pump", {} if envelope is None else {"envelope": envelope}, {"done": done})

    def _finish(self, request: Message) -> Message:
        """Map spu's output to own rows, ordered by id bytes (both parties hold the same set: one order);
        B sends a digest of its intersection to A, which refuses a result that differs from its own.

        A's finish may come twice: first with ``locate`` (while B maps its own result, so the two run at once;
        A keeps its rows in the session, unpublished), then with B's digest, which alone publishes them."""
        peer = str(request.meta["peer"])
        role = "b" if self.sessions.get(peer) is not None and self.sessions[peer].role == "b" else "a"
        session = self._session(peer, role)
        assert session.directory is not None and session.process is not None
        try:
            code = session.process.wait(timeout=max(0.0, min(FINISH_WAIT, session.deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            raise PsiError(f"party {self.name!r}: the RR22 worker has not finished; ask for the result once the "
                           "pump reports done (the session is closed)") from None
        if code != 0 or not (session.directory / "report.json").is_file():
            raise PsiError(f"party {self.name!r}: the RR22 worker failed ({session.worker_error()})")
        channels = self.psi._channels()
        if session.mode == "label_holder" and role == "b":
            self.psi.rows.pop(peer, None)
            return request.reply("psi.rr22.finish")
        if session.located is None:
            ids, _ = _compact(self.psi)
            rows, found = codec.read_result(session.directory / "out.csv", ids, session.width, self.name)
            if len(found) == 0:
                raise PsiError(f"party {self.name!r}: no common customers between {self.name!r} and {peer!r}")
            session.located = codec.locate(ids, found, session.width, self.name, rows=rows)
            del found, rows
        rows, tokens = session.located
        if role == "a" and request.meta.get("locate"):
            return request.reply("psi.rr22.finish", meta={"located": True})
        digest = np.frombuffer(hashlib.sha256(tokens.tobytes()).digest(), dtype=np.uint8)
        if role == "b":
            self.psi.rows[peer], self.psi._tokens[peer] = rows, tokens
            self.psi.cardinality[peer] = len(rows)
            inner = Message(request.run_id, request.step, self.name, peer, "psi.rr22.finish", {"digest": digest})
            return request.reply("psi.rr22.finish", {"envelope": channels.seal(peer, inner)})
        if session.mode == "both":
            theirs = channels.open(peer, request.arrays["envelope"]) if "envelope" in request.arrays else None
            if theirs is None or theirs.kind != "psi.rr22.finish" or not np.array_equal(
                    theirs.arrays.get("digest", np.zeros(0, np.uint8)), digest):
                for slot in (self.psi.rows, self.psi._tokens, self.psi.cardinality):
                    slot.pop(peer, None)
                raise PsiError(f"party {self.name!r}: {peer!r} holds a different RR22 intersection; result refused")
        self.psi.rows[peer], self.psi._tokens[peer] = rows, tokens
        self.psi.cardinality[peer] = len(rows)
        return request.reply("psi.rr22.finish", meta={"cardinality": len(rows)} if session.mode == "both" else {})

    def _close(self, request: Message) -> Message:
        session = self.sessions.pop(str(request.meta["peer"]), None)
        if session is not None:
            session.close()
        return request.reply("psi.rr22.close")


def register_rr22(psi: PsiParty, app: Any, max_seconds: float = MAX_SECONDS) -> Rr22Party:
    """The hook `PsiParty.register` calls: the RR22 handlers next to the ECDH ones (spu is needed only when used)."""
    return Rr22Party(psi, max_seconds).register(app)
