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

Liveness: parties send a HEARTBEAT frame every `heartbeat_s` (asked in WELCOME) from a thread of their
own; a connected party silent for `silent_after_s` is named in the log and the audit log at once, and
the requests waiting on it fail with a PartyError naming it (`Unresponsive`). `health()` is what an
operator's `sampan runs status` shows per party.

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
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import grpc
import grpc.aio

from sampan.core.transport import PartyError
from sampan.transport.grpc_envelope import SERVICE, EnvelopeError, FrameKind, ReplayGuard, frames_for, open_envelope
from sampan.transport.grpc_operator import OPERATOR_METHODS, operator_unary
from sampan.transport.grpc_session import (
    AuthenticationError,
    Authenticator,
    HubSettings,
    Identity,
    PartySession,
    PendingRequest,
    server_options,
)
from sampan.transport.grpc_streams import PartyStreams
from sampan.transport.grpc_transport import GrpcTransport
from sampan.wire import Message, encode

__all__ = ["Identity", "AuthenticationError", "Authenticator", "HubSettings", "Hub", "GrpcTransport", "server_options",
           "PartyError"]

security_log = logging.getLogger("sampan.deploy.security")
log = logging.getLogger("sampan.deploy.hub")

Tap = Callable[[str, str, bytes], None]
EventSink = Callable[..., Any]   # (kind, detail, peer=...) -> None
ControlHandler = Callable[["Identity", Message], Message]


class Hub(PartyStreams):
    """The coordinator's gRPC server and the per-party sessions behind `GrpcTransport`."""

    def __init__(self, settings: HubSettings, authenticator: Authenticator, members: Mapping[str, str], *,
                 control: Mapping[str, ControlHandler] | None = None, tap: Tap | None = None,
                 on_event: EventSink | None = None) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.authenticator = authenticator
        self.members = dict(members)
        self.party_names = sorted(n for n, role in self.members.items() if role == "party")
        self._sessions = {n: PartySession(n, self.limits.replay_window_s) for n in self.party_names}
        self._named_silent: set[str] = set()
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
                    **{m: grpc.unary_unary_rpc_method_handler(operator_unary(self, m)) for m in OPERATOR_METHODS}}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        port = server.add_secure_port(address, credentials)
        if port == 0:
            raise OSError(f"cannot listen on {address}")
        await server.start()
        self._server = server
        asyncio.ensure_future(self._watch_liveness())
        return port

    async def _watch_liveness(self) -> None:
        """Name a party the moment it falls silent (or comes back): operators see who is missing within seconds."""
        while self._server is not None:
            await asyncio.sleep(min(1.0, self.settings.heartbeat_s))
            now = time.monotonic()
            for name, s in self._sessions.items():
                silent = s.silent_for(now)
                if silent > self.settings.silent_after_s and name not in self._named_silent:
                    self._named_silent.add(name)
                    log.warning("party %s is silent: no frame for %.1f s on its live stream (%d request(s) waiting "
                                "on it fail)", name, silent, len(s.outstanding))
                    self._event("peer_silent", {"party": name, "peer": s.peer, "seconds": round(silent, 1)},
                                f"member:{name}")
                elif name in self._named_silent and silent <= self.settings.silent_after_s:
                    self._named_silent.discard(name)
                    log.info("party %s is %s again", name, "heard from" if s.connected else "gone (disconnected)")

    def stop(self, grace: float = 1.0) -> None:
        """Close every stream and fail every request still waiting (so a run in progress ends at once)."""
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._fail_all, "Stopped", "the coordinator is stopping")
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

    def health(self, parties: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Per party: connected / silent / disconnected, since how many seconds, requests outstanding."""
        names = list(parties) if parties is not None else self.party_names
        return [self._sessions[n].health(self.settings.silent_after_s) for n in names if n in self._sessions]

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

    def transport(self, parties: Sequence[str] | None = None) -> GrpcTransport:
        return GrpcTransport(self, parties)

    def send(self, message: Message) -> PendingRequest:
        if message.recipient not in self._sessions:
            raise KeyError(f"no party named {message.recipient!r}; known: {self.party_names}")
        data = encode(message)
        nonce, frames = frames_for(message, kind=FrameKind.REQUEST, role="coordinator", limits=self.limits, data=data)
        pending = PendingRequest(message, nonce, frames, len(data))
        self._call(self._enqueue, pending)
        return pending

    def abandon(self, pending: PendingRequest) -> None:
        if not pending.future.done():
            self._call(self._abandon, pending)

    def wait(self, pending: PendingRequest) -> Message:
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
                silent = s.silent_for(now)
                if silent > self.settings.silent_after_s:
                    self.abandon(pending)
                    log.warning("party %s is silent: no frame for %.1f s on its live stream; its %s request fails",
                                pending.party, silent, pending.kind)
                    raise PartyError(pending.party, pending.kind, "Unresponsive",
                                     f"party is connected but sent nothing (not even a heartbeat) for {silent:.0f} s; "
                                     "its agent is hung or its host overloaded") from None
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
    def _enqueue(self, pending: PendingRequest) -> None:
        s = self._sessions[pending.party]
        s.outstanding[pending.nonce] = pending
        if s.queue is not None:
            for frame in pending.frames:
                s.queue.put_nowait(frame)

    def _fail_all(self, code: str, reason: str) -> None:
        for s in self._sessions.values():
            for pending in s.outstanding.values():
                if not pending.future.done():
                    pending.future.set_exception(PartyError(s.name, pending.kind, code, reason))
            s.outstanding.clear()

    def _abandon(self, pending: PendingRequest) -> None:
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

    def _cut(self, s: PartySession, code: str, reason: str) -> None:
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
