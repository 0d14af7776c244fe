"""Coordinator side of the gRPC transport: one long-lived stream per party, requests pushed down it.

Parties only dial out: each party agent opens `Connect`, says HELLO, and the coordinator pushes
requests down the stream; replies come back on the same stream. The server runs on an asyncio loop
in its own thread (hundreds of streams, one thread); workflows stay synchronous and call
`GrpcTransport.exchange`, which hands requests to the loop and waits for the replies in request
order, so every workflow runs unchanged.

What the hub refuses, and logs on the ``sampan.deploy.security`` logger with the peer address: a
certificate the authenticator does not accept (unknown member, wrong role, revoked, pin mismatch),
a HELLO with another protocol version or another name, frames that do not parse or exceed the
limits, frames whose sender/role/recipient do not match the authenticated identity, replayed
nonces and replies to requests that were never sent. A stream that keeps misbehaving is closed;
the other parties' streams are never affected. (Handshake failures — unknown CA, expired
certificate, bytes that are not TLS — happen inside gRPC's TLS layer; see `sampan.deploy.grpclog`.)
Every connection, disconnection, refusal and cut stream is also handed to `on_event` (the coordinator
writes them to its signed audit log).

A live stream is not trusted forever: `revalidate` re-checks every connected party's certificate
(the coordinator calls it whenever a new CRL or issuance record appears and when a run starts) and
cuts the streams that no longer pass, failing their outstanding requests at once. A new stream's
certificate is checked again after its HELLO (and once more if the authenticator loaded newer revocation
data meanwhile), so a revocation published between the first check and HELLO is not missed.

A party that disconnects keeps its outstanding requests: when it reconnects they are sent again with
the same nonce (the party answers a repeated nonce from its reply cache, so nothing runs twice), and
a party that stays away longer than `rejoin_timeout_s` fails the request with a PartyError.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import OrderedDict, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence

import grpc
import grpc.aio

from sampan.core.transport import PartyError, TrafficLog, Transport, raise_for_error, take_requests
from sampan.transport.grpc_envelope import (
    DEPLOY_PROTOCOL_VERSION, Assembler, EnvelopeError, Frame, FrameKind, Limits, ReplayGuard, SERVICE, control_frame,
    frames_for, hello_detail, open_envelope, parse_detail, parse_frame,
)
from sampan.wire import PROTOCOL_VERSION, Message, encode

__all__ = ["Identity", "AuthenticationError", "Authenticator", "HubSettings", "Hub", "GrpcTransport", "server_options"]

security_log = logging.getLogger("sampan.deploy.security")
log = logging.getLogger("sampan.deploy.hub")

Tap = Callable[[str, str, bytes], None]
EventSink = Callable[..., Any]   # (kind, detail, peer=...) -> None
ControlHandler = Callable[["Identity", Message], Message]


@dataclass(frozen=True)
class Identity:
    """Who is on the other end of a stream, as established by its mutual-TLS certificate."""

    name: str
    role: str
    fingerprint: str = ""


class AuthenticationError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Authenticator(Protocol):
    def authenticate(self, pem_cert: bytes | None, peer: str) -> Identity:
        """Map a verified peer certificate to an identity, or raise AuthenticationError."""


@dataclass(frozen=True)
class HubSettings:
    name: str = "coordinator"
    limits: Limits = field(default_factory=Limits)
    hello_timeout_s: float = 10.0
    request_timeout_s: float = 3600.0
    rejoin_timeout_s: float = 120.0
    max_violations: int = 5
    max_in_flight: int | None = None


def server_options(limits: Limits) -> list[tuple[str, Any]]:
    """gRPC's own cap is twice the frame limit: a frame a little too large reaches `parse_frame`, which
    refuses it with a logged reason; only grossly oversized ones are cut off by gRPC itself."""
    return [
        ("grpc.max_receive_message_length", 2 * limits.max_frame_bytes),
        ("grpc.max_send_message_length", limits.max_frame_bytes),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_ping_strikes", 0),
    ]


class _Pending:
    """One request in flight: its frames (kept for re-sending) and the future its reply lands in."""

    __slots__ = ("nonce", "party", "kind", "run_id", "step", "frames", "size", "future", "internal")

    def __init__(self, message: Message, nonce: bytes, frames: list[bytes], size: int, internal: bool = False) -> None:
        self.nonce, self.frames, self.size, self.internal = nonce, frames, size, internal
        self.party, self.kind, self.run_id, self.step = message.recipient, message.kind, message.run_id, message.step
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()


class _Session:
    """A party's state across its connections (lives on the hub's loop)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stream_id = 0
        self.connected = False
        self.since = time.monotonic()
        self.queue: asyncio.Queue[bytes | None] | None = None
        self.outstanding: OrderedDict[bytes, _Pending] = OrderedDict()
        self.abandoned: OrderedDict[bytes, None] = OrderedDict()
        self.guard = ReplayGuard()
        self.peer = ""
        self.connections = 0
        self.cert_pem: bytes | None = None
        self.cut: tuple[str, str] | None = None   # (code, reason) when the hub cut this party's stream


class Hub:
    """The coordinator's gRPC server and the per-party sessions behind `GrpcTransport`."""

    def __init__(self, settings: HubSettings, authenticator: Authenticator, members: Mapping[str, str], *,
                 control: Mapping[str, ControlHandler] | None = None, tap: Tap | None = None,
                 on_event: EventSink | None = None) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.authenticator = authenticator
        self.members = dict(members)
        self.party_names = sorted(n for n, role in self.members.items() if role == "party")
        self._sessions = {n: _Session(n) for n in self.party_names}
        for s in self._sessions.values():
            s.guard = ReplayGuard(self.limits.replay_window_s)
        self._control = dict(control or {})
        self._operator_guard = ReplayGuard(self.limits.replay_window_s)
        self._tap = tap
        self._preambles: dict[str, Callable[[str], Message | None]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: grpc.aio.Server | None = None
        self.frame_bytes: dict[tuple[str, str], int] = defaultdict(int)
        self.rejections: deque[dict[str, str]] = deque(maxlen=1000)
        self.last_refusal: dict[str, str] = {}
        self._on_event = on_event
        self.port = 0

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self, address: str, credentials: grpc.ServerCredentials) -> int:
        """Bind and serve on a background thread; returns the bound port (useful with port 0)."""
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run_loop, args=(ready,), name="sampan-hub", daemon=True)
        self._thread.start()
        ready.wait()
        assert self._loop is not None
        self.port = asyncio.run_coroutine_threadsafe(self._serve(address, credentials), self._loop).result()
        return self.port

    def _run_loop(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        ready.set()
        self._loop.run_forever()

    async def _serve(self, address: str, credentials: grpc.ServerCredentials) -> int:
        server = grpc.aio.server(options=server_options(self.limits))
        handlers = {"Connect": grpc.stream_stream_rpc_method_handler(self._connect),
                    "Submit": grpc.unary_unary_rpc_method_handler(self._unary("Submit")),
                    "Status": grpc.unary_unary_rpc_method_handler(self._unary("Status"))}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        port = server.add_secure_port(address, credentials)
        if port == 0:
            raise OSError(f"cannot listen on {address}")
        await server.start()
        self._server = server
        return port

    def stop(self, grace: float = 1.0) -> None:
        if self._loop is None:
            return
        if self._server is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._loop).result(timeout=grace + 5)
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._loop = None

    # --- thread-safe API for workflows --------------------------------------------------------------
    def connected(self) -> list[str]:
        return sorted(n for n, s in self._sessions.items() if s.connected)

    def wait_for(self, parties: Iterable[str], timeout: float) -> list[str]:
        """Wait until every named party is connected; returns those still missing at the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            missing = [p for p in parties if not (p in self._sessions and self._sessions[p].connected)]
            if not missing or time.monotonic() >= deadline:
                return missing
            time.sleep(0.05)

    def set_preamble(self, key: str, make: Callable[[str], Message | None] | None) -> None:
        """Messages sent to a party first whenever it (re)connects, e.g. a run's setup for a restarted agent."""
        with self._lock:
            if make is None:
                self._preambles.pop(key, None)
            else:
                self._preambles[key] = make

    def transport(self, parties: Sequence[str] | None = None) -> "GrpcTransport":
        return GrpcTransport(self, parties)

    def send(self, message: Message) -> _Pending:
        if message.recipient not in self._sessions:
            raise KeyError(f"no party named {message.recipient!r}; known: {self.party_names}")
        data = encode(message)
        nonce, frames = frames_for(message, kind=FrameKind.REQUEST, role="coordinator", limits=self.limits, data=data)
        pending = _Pending(message, nonce, frames, len(data))
        self._call(self._enqueue, pending)
        return pending

    def abandon(self, pending: _Pending) -> None:
        if not pending.future.done():
            self._call(self._abandon, pending)

    def wait(self, pending: _Pending) -> Message:
        """Block until the reply arrives; decode and check its binding (in the caller's thread)."""
        s = self._sessions[pending.party]
        deadline = time.monotonic() + self.settings.request_timeout_s
        while True:
            try:
                envelope = pending.future.result(timeout=0.2)
                break
            except PartyError:
                raise
            except concurrent.futures.TimeoutError:
                if s.cut is not None and not s.connected:
                    self.abandon(pending)
                    raise PartyError(pending.party, pending.kind, "Refused", f"{s.cut[0]}: {s.cut[1]}") from None
                now = time.monotonic()
                if not s.connected and now - s.since > self.settings.rejoin_timeout_s:
                    self.abandon(pending)
                    raise PartyError(pending.party, pending.kind, "Disconnected",
                                     f"party is not connected and did not rejoin within "
                                     f"{self.settings.rejoin_timeout_s:.0f} s") from None
                if now > deadline:
                    self.abandon(pending)
                    raise PartyError(pending.party, pending.kind, "Timeout",
                                     f"no reply within {self.settings.request_timeout_s:.0f} s") from None
        try:
            message = open_envelope(envelope, self.limits)
            expected = {"sender": pending.party, "recipient": self.settings.name, "run_id": pending.run_id,
                        "step": pending.step}
            for key, want in expected.items():
                if getattr(message, key) != want:
                    raise EnvelopeError("binding", f"reply {key} is {getattr(message, key)!r}; the request it "
                                        f"answers expects {want!r}")
        except EnvelopeError as exc:
            self._log_rejection(pending.party, s.peer, exc.code, str(exc))
            raise PartyError(pending.party, pending.kind, "EnvelopeError", str(exc)) from None
        return message

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is None:
            raise RuntimeError("the hub is not running")
        self._loop.call_soon_threadsafe(fn, *args)

    # --- loop side ----------------------------------------------------------------------------------
    def _enqueue(self, pending: _Pending) -> None:
        s = self._sessions[pending.party]
        s.outstanding[pending.nonce] = pending
        if s.queue is not None:
            for frame in pending.frames:
                s.queue.put_nowait(frame)

    def _abandon(self, pending: _Pending) -> None:
        s = self._sessions[pending.party]
        if s.outstanding.pop(pending.nonce, None) is not None:
            s.abandoned[pending.nonce] = None
            while len(s.abandoned) > 10_000:
                s.abandoned.popitem(last=False)

    def _log_rejection(self, who: str, peer: str, code: str, reason: str) -> None:
        self.rejections.append({"who": who, "peer": peer, "code": code, "reason": reason})
        if who:
            self.last_refusal[who.split(" ", 1)[0]] = f"{code}: {reason}"
        security_log.warning("rejected %s from %s (%s): %s", who or "unknown peer", peer or "?", code, reason)
        # Rate-limit key: a member's own misbehaviour counts against that member, an unauthenticated peer's
        # against its address, so a stranger flooding from one host cannot crowd out members' entries.
        self._event("peer_refused", {"who": who, "peer": peer, "code": code, "reason": reason},
                    f"member:{who}" if who in self._sessions else peer)

    def _event(self, kind: str, detail: dict[str, Any], peer: str) -> None:
        if self._on_event is not None:
            try:
                self._on_event(kind, detail, peer=peer)
            except Exception as exc:  # noqa: BLE001 - auditing must never take the hub down
                log.error("security event %s not recorded: %s", kind, exc)

    # --- revalidation (new CRL, run start) ------------------------------------------------------------
    def _generation(self) -> object:
        """The authenticator's revocation-data generation (None if it has none)."""
        return getattr(self.authenticator, "generation", None)

    def revalidate(self) -> list[str]:
        """Re-check every connected party's certificate; cut the streams that fail. Returns the cut names."""
        cut: list[str] = []
        for name, s in list(self._sessions.items()):
            pem = s.cert_pem
            if not s.connected or pem is None:
                continue
            try:
                identity = self.authenticator.authenticate(pem, s.peer)
                if identity.name != name:
                    raise AuthenticationError("wrong_identity", f"certificate now names {identity.name!r}")
            except AuthenticationError as exc:
                self.cut(name, exc.code, str(exc))
                cut.append(name)
            except Exception as exc:  # noqa: BLE001 - e.g. an unreadable CRL: refuse, say why
                self.cut(name, "auth_error", f"certificate re-check failed: {type(exc).__name__}: {exc}")
                cut.append(name)
        return cut

    def cut(self, name: str, code: str, reason: str) -> None:
        """Close a party's live stream (PERMISSION_DENIED with the reason) and fail its outstanding requests."""
        s = self._sessions[name]
        self._log_rejection(name, s.peer, code, f"live stream cut: {reason}")
        self._event("stream_cut", {"party": name, "peer": s.peer, "code": code, "reason": reason}, f"member:{name}")
        self._call(self._cut, s, code, reason)

    def _cut(self, s: _Session, code: str, reason: str) -> None:
        s.cut = (code, reason)
        if s.queue is not None:
            s.queue.put_nowait(None)
        for pending in s.outstanding.values():
            if not pending.future.done():
                pending.future.set_exception(PartyError(s.name, pending.kind, "Refused", f"{code}: {reason}"))
        s.outstanding.clear()

    async def _identity(self, context: grpc.aio.ServicerContext, role: str) -> Identity:
        auth = context.auth_context()
        pem = (auth.get("x509_pem_cert") or [None])[0]
        # Off the loop: certificate checks may read the CRL or record a pin on disk.
        try:
            identity = await asyncio.get_running_loop().run_in_executor(
                None, self.authenticator.authenticate, pem, context.peer())
        except AuthenticationError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. an unreadable CRL: refuse, say why
            raise AuthenticationError("auth_error", f"certificate check failed: {type(exc).__name__}: {exc}") from None
        if identity.role != role:
            raise AuthenticationError("wrong_role", f"certificate of {identity.name!r} has role {identity.role!r}; "
                                      f"this call needs a {role!r} certificate")
        if self.members.get(identity.name) != role:
            raise AuthenticationError("not_a_member", f"{identity.name!r} is not a {role} of this federation")
        return identity

    async def _refuse(self, context: grpc.aio.ServicerContext, who: str, code: str, reason: str,
                      status: grpc.StatusCode) -> None:
        self._log_rejection(who, context.peer(), code, reason)
        await context.abort(status, f"{code}: {reason}")

    async def _connect(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        peer = context.peer()
        try:
            identity = await self._identity(context, "party")
        except AuthenticationError as exc:
            await self._refuse(context, _claimed_name(context), exc.code, str(exc), grpc.StatusCode.PERMISSION_DENIED)
            return
        name = identity.name
        try:
            raw = await asyncio.wait_for(request_iterator.__anext__(), self.settings.hello_timeout_s)
            frame = parse_frame(raw, self.limits)
            hello = self._check_hello(frame, identity)
        except (StopAsyncIteration, asyncio.TimeoutError):
            await self._refuse(context, name, "no_hello", "no HELLO frame within "
                               f"{self.settings.hello_timeout_s:.0f} s", grpc.StatusCode.DEADLINE_EXCEEDED)
            return
        except EnvelopeError as exc:
            status = (grpc.StatusCode.FAILED_PRECONDITION if exc.code == "incompatible_version"
                      else grpc.StatusCode.PERMISSION_DENIED if exc.code in ("wrong_identity", "wrong_role")
                      else grpc.StatusCode.INVALID_ARGUMENT)
            await self._refuse(context, name, exc.code, str(exc), status)
            return
        # The certificate was checked before HELLO, which may take seconds; a revocation published meanwhile
        # is not seen by `revalidate` (the stream is not connected yet). So check again now, and once more
        # below if a newer CRL or issuance record was loaded while this check ran.
        generation = self._generation()
        try:
            await self._identity(context, "party")
        except AuthenticationError as exc:
            await self._refuse(context, name, exc.code, str(exc), grpc.StatusCode.PERMISSION_DENIED)
            return
        s = self._sessions[name]
        if s.queue is not None:
            log.info("party %s reconnected from %s; closing its previous stream", name, peer)
            s.queue.put_nowait(None)
        s.stream_id += 1
        stream_id = s.stream_id
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        s.queue, s.connected, s.since, s.peer = queue, True, time.monotonic(), peer
        s.cert_pem, s.cut = (context.auth_context().get("x509_pem_cert") or [None])[0], None
        s.connections += 1
        if self._generation() != generation:  # revocation data changed during the check: re-check this stream
            try:
                await self._identity(context, "party")
            except AuthenticationError as exc:
                s.queue, s.connected = None, False
                await self._refuse(context, name, exc.code, str(exc), grpc.StatusCode.PERMISSION_DENIED)
                return
        welcome = control_frame(FrameKind.WELCOME, sender=self.settings.name, role="coordinator", recipient=name,
                                detail=hello_detail(max_message_bytes=self.limits.max_message_bytes,
                                                    chunk_bytes=self.limits.chunk_bytes,
                                                    protocol=DEPLOY_PROTOCOL_VERSION))
        await self._write(context, name, welcome)
        self._resend(s, queue)
        log.info("party %s connected from %s (connection %d, agent %s)", name, peer, s.connections,
                 hello.get("agent", "?"))
        self._event("peer_connected", {"party": name, "peer": peer, "pin": identity.fingerprint,
                                       "connection": s.connections}, f"member:{name}")
        reader = asyncio.ensure_future(self._read(s, stream_id, identity, request_iterator, queue, peer))
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                await self._write(context, name, item)
        except Exception as exc:  # noqa: BLE001 - a broken stream ends this party's connection only
            log.info("stream to %s ended: %s", name, exc)
        finally:
            reader.cancel()
            if s.stream_id == stream_id:
                s.queue, s.connected, s.since = None, False, time.monotonic()
                log.info("party %s disconnected (%d request(s) outstanding)", name, len(s.outstanding))
                self._event("peer_disconnected", {"party": name, "peer": peer}, f"member:{name}")
        if s.stream_id == stream_id and s.cut is not None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{s.cut[0]}: {s.cut[1]}")

    async def _write(self, context: grpc.aio.ServicerContext, party: str, frame: bytes) -> None:
        self.frame_bytes[(party, "to_party")] += len(frame)
        if self._tap is not None:
            self._tap(party, "to_party", frame)
        await context.write(frame)

    def _check_hello(self, frame: Frame, identity: Identity) -> dict[str, Any]:
        if frame.kind != FrameKind.HELLO:
            raise EnvelopeError("malformed", f"the first frame must be HELLO, got {frame.kind_name}")
        hello = parse_detail(frame)
        if frame.sender != identity.name:
            raise EnvelopeError("wrong_identity", f"HELLO claims to be {frame.sender!r} but the certificate is "
                                f"{identity.name!r}")
        if frame.role != "party":
            raise EnvelopeError("wrong_role", f"HELLO claims role {frame.role!r}; only parties connect")
        wire = hello.get("wire_version")
        if wire != PROTOCOL_VERSION:
            raise EnvelopeError("incompatible_version",
                                f"party {identity.name!r} speaks wire format {wire!r}; this coordinator speaks "
                                f"wire format {PROTOCOL_VERSION} (deployment protocol {DEPLOY_PROTOCOL_VERSION}). "
                                "Upgrade the older side so both run the same Sampan release line.")
        return hello

    def _resend(self, s: _Session, queue: asyncio.Queue[bytes | None]) -> None:
        """On (re)connect: the run preambles first, then every request still waiting for a reply."""
        for nonce in [n for n, p in s.outstanding.items() if p.internal]:
            del s.outstanding[nonce]
        with self._lock:
            makers = list(self._preambles.values())
        preamble: list[_Pending] = []
        for make in makers:
            message = make(s.name)
            if message is None:
                continue
            nonce, frames = frames_for(message, kind=FrameKind.REQUEST, role="coordinator", limits=self.limits)
            pending = _Pending(message, nonce, frames, sum(map(len, frames)), internal=True)
            pending.future.add_done_callback(self._preamble_done(s.name, message.kind))
            preamble.append(pending)
        waiting = list(s.outstanding.values())
        for pending in preamble:
            s.outstanding[pending.nonce] = pending
        if waiting:
            log.info("re-sending %d outstanding request(s) to %s", len(waiting), s.name)
        for pending in [*preamble, *waiting]:
            for frame in pending.frames:
                queue.put_nowait(frame)

    def _preamble_done(self, party: str, kind: str) -> Callable[[concurrent.futures.Future[Any]], None]:
        def done(future: concurrent.futures.Future[Any]) -> None:
            try:
                reply = open_envelope(future.result(), self.limits)
                if reply.is_error:
                    log.warning("party %s failed on %s after reconnecting: %s", party, kind, reply.meta.get("error"))
            except Exception as exc:  # noqa: BLE001 - logged; the run's next request will fail clearly
                log.warning("party %s: bad reply to %s after reconnecting: %s", party, kind, exc)
        return done

    async def _read(self, s: _Session, stream_id: int, identity: Identity, request_iterator: Any,
                    queue: asyncio.Queue[bytes | None], peer: str) -> None:
        assembler = Assembler(self.limits)
        violations, skip = 0, b""
        try:
            async for raw in request_iterator:
                self.frame_bytes[(s.name, "from_party")] += len(raw)
                if self._tap is not None:
                    self._tap(s.name, "from_party", raw)
                frame: Frame | None = None
                try:
                    frame = parse_frame(raw, self.limits)
                    if skip and frame.nonce == skip:
                        continue
                    skip = b""
                    envelope = self._accept(s, identity, frame, assembler)
                except EnvelopeError as exc:
                    violations += 1
                    assembler.reset()
                    skip = frame.nonce if frame is not None else b""
                    self._log_rejection(s.name, peer, exc.code, str(exc))
                    queue.put_nowait(control_frame(FrameKind.REJECT, sender=self.settings.name, role="coordinator",
                                                   recipient=s.name, code=exc.code, detail=str(exc),
                                                   in_reply_to=frame.nonce if frame is not None else b""))
                    if violations >= self.settings.max_violations:
                        self._log_rejection(s.name, peer, "closed", f"{violations} refused frames; closing the stream")
                        break
                    continue
                if envelope is None:
                    continue
                s.guard.add(envelope.head.nonce)
                pending = s.outstanding.pop(envelope.head.in_reply_to, None)
                if pending is not None:
                    pending.future.set_result(envelope)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a frame over gRPC's size limit ends the stream
            self._log_rejection(s.name, peer, "stream_error", f"stream ended by gRPC: {exc}")
        finally:
            if s.stream_id == stream_id:
                queue.put_nowait(None)

    def _accept(self, s: _Session, identity: Identity, frame: Frame, assembler: Assembler) -> Any:
        if frame.sender != identity.name:
            raise EnvelopeError("wrong_identity", f"frame claims sender {frame.sender!r} on {identity.name!r}'s stream")
        if frame.role != "party":
            raise EnvelopeError("wrong_role", f"frame claims role {frame.role!r}; a party stream carries party frames")
        if frame.kind == FrameKind.REJECT:
            log.warning("party %s refused a frame (%s): %s", s.name, frame.code, frame.detail)
            pending = s.outstanding.pop(frame.in_reply_to, None)
            if pending is not None:  # the request it refused fails now, not at the timeout
                pending.future.set_exception(PartyError(s.name, pending.kind, "Refused", f"{frame.code}: {frame.detail}"))
            return None
        if frame.kind != FrameKind.REPLY:
            raise EnvelopeError("wrong_role", f"a party may only send REPLY frames, not {frame.kind_name}")
        if frame.recipient != self.settings.name:
            raise EnvelopeError("binding", f"frame is addressed to {frame.recipient!r}, not {self.settings.name!r}")
        if frame.chunk_index == 0:
            s.guard.check(frame.nonce, frame.sent_at_ms)
            if frame.in_reply_to not in s.outstanding and frame.in_reply_to not in s.abandoned:
                raise EnvelopeError("replay", "reply to a request that is not outstanding (replayed or unsolicited)")
        return assembler.feed(frame)  # a reply to an abandoned request is assembled, then dropped

    # --- operator calls (Submit, Status) ------------------------------------------------------------
    def _unary(self, method: str) -> Callable[[bytes, grpc.aio.ServicerContext], Any]:
        async def call(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            try:
                identity = await self._identity(context, "operator")
            except AuthenticationError as exc:
                await self._refuse(context, _claimed_name(context), exc.code, str(exc),
                                   grpc.StatusCode.PERMISSION_DENIED)
                return b""
            try:
                frame = parse_frame(raw, self.limits)
                if frame.kind != FrameKind.REQUEST or frame.role != "operator" or frame.sender != identity.name:
                    raise EnvelopeError("wrong_role", f"{method} takes one REQUEST frame from the operator's own name")
                if frame.chunk_count != 1:
                    raise EnvelopeError("too_large", f"{method} requests must fit in one chunk")
                self._operator_guard.check(frame.nonce, frame.sent_at_ms)
                envelope = Assembler(self.limits).feed(frame)
                assert envelope is not None
                self._operator_guard.add(frame.nonce)
                message = open_envelope(envelope, self.limits)
            except EnvelopeError as exc:
                await self._refuse(context, identity.name, exc.code, str(exc), grpc.StatusCode.INVALID_ARGUMENT)
                return b""
            handler = self._control.get(method)
            if handler is None:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not served here")
                return b""
            loop = asyncio.get_running_loop()
            try:
                reply = await loop.run_in_executor(None, handler, identity, message)
            except Exception as exc:  # noqa: BLE001 - reported to the operator
                reply = message.error_reply(exc)
            _, frames = frames_for(reply, kind=FrameKind.REPLY, role="coordinator", limits=self.limits,
                                   in_reply_to=frame.nonce)
            if len(frames) != 1:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{method} reply too large")
            return frames[0]
        return call


def _claimed_name(context: grpc.aio.ServicerContext) -> str:
    """The CN a refused peer's certificate claims (unverified: for the log and audit entry only)."""
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        pem = (context.auth_context().get("x509_pem_cert") or [None])[0]
        if not pem:
            return ""
        names = x509.load_pem_x509_certificate(pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return f"{names[0].value} (claimed)" if names else ""
    except Exception:  # noqa: BLE001 - best effort
        return ""


class GrpcTransport(Transport):
    """`Transport` over the hub's party streams: same contract as the in-process transport.

    Requests are read lazily and kept in flight up to a window (default: two per party), so the
    parties work concurrently; replies are yielded in request order.
    """

    def __init__(self, hub: Hub, parties: Sequence[str] | None = None) -> None:
        self._hub = hub
        self._parties = list(parties) if parties is not None else list(hub.party_names)
        unknown = [p for p in self._parties if p not in hub.party_names]
        if unknown:
            raise ValueError(f"parties {unknown} are not members of this federation ({hub.party_names})")
        self._known = frozenset(self._parties)
        self.traffic = TrafficLog()

    @property
    def parties(self) -> list[str]:
        return list(self._parties)

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        window: deque[_Pending] = deque()
        limit = self._hub.settings.max_in_flight or max(8, 2 * len(self._parties))
        source = iter(messages)
        exhausted = False
        try:
            while True:
                batch: list[Message] = []
                if not exhausted:
                    batch, exhausted = take_requests(source, self._known, limit - len(window))
                for message in batch:
                    pending = self._hub.send(message)
                    self.traffic.record(message.recipient, "received", message.kind, pending.size)
                    window.append(pending)
                if not window:
                    return
                pending = window.popleft()
                reply = self._hub.wait(pending)
                self.traffic.record(pending.party, "sent", reply.kind, pending.future.result().head.total_bytes)
                yield raise_for_error(reply)
        finally:
            for pending in window:
                self._hub.abandon(pending)
