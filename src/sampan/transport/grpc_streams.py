"""The hub's party streams: HELLO and WELCOME, pushing requests, reading replies and heartbeats, re-sending.

A mixin of `sampan.transport.grpc_hub.Hub` (which holds the sessions, settings and audit hooks);
kept apart so each module stays small. Everything here runs on the hub's event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from sampan.core.transport import PartyError
from sampan.transport.grpc_envelope import (
    DEPLOY_PROTOCOL_VERSION,
    Assembler,
    EnvelopeError,
    Frame,
    FrameKind,
    Limits,
    control_frame,
    frames_for,
    hello_detail,
    open_envelope,
    parse_detail,
    parse_frame,
)
from sampan.transport.grpc_session import (
    AuthenticationError,
    HubSettings,
    Identity,
    PartySession,
    PendingRequest,
    claimed_name,
)
from sampan.wire import PROTOCOL_VERSION, Message

__all__ = ["PartyStreams"]

log = logging.getLogger("sampan.deploy.hub")


class PartyStreams:
    """`Connect` for party agents; needs the hub's `_sessions`, `settings`, `limits`, `_identity`, `_refuse`,
    `_event`, `_log_rejection`, `_generation`, `_preambles`, `_lock`, `_tap` and `frame_bytes`."""

    if TYPE_CHECKING:  # what the mixin needs from Hub, declared for the type checker only
        settings: HubSettings
        limits: Limits
        _sessions: dict[str, PartySession]
        _tap: Callable[[str, str, bytes], None] | None
        _preambles: dict[str, Callable[[str], Message | None]]
        _lock: threading.Lock
        frame_bytes: dict[tuple[str, str], int]

        async def _identity(self, context: grpc.aio.ServicerContext, role: str) -> Identity: ...
        async def _refuse(self, context: grpc.aio.ServicerContext, who: str, code: str, reason: str,
                          status: grpc.StatusCode) -> None: ...
        def _event(self, kind: str, detail: dict[str, Any], peer: str) -> None: ...
        def _log_rejection(self, who: str, peer: str, code: str, reason: str) -> None: ...
        def _generation(self) -> object: ...

    async def _connect(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        peer = context.peer()
        try:
            identity = await self._identity(context, "party")
        except AuthenticationError as exc:
            await self._refuse(context, claimed_name(context), exc.code, str(exc), grpc.StatusCode.PERMISSION_DENIED)
            return
        name = identity.name
        try:
            raw = await asyncio.wait_for(request_iterator.__anext__(), self.settings.hello_timeout_s)
            frame = parse_frame(raw, self.limits)
            hello = self._check_hello(frame, identity)
        except (TimeoutError, StopAsyncIteration):
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
        s.last_seen, s.heartbeats = s.since, bool(hello.get("heartbeat"))
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
                                                    protocol=DEPLOY_PROTOCOL_VERSION,
                                                    heartbeat_s=self.settings.heartbeat_s))
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

    def _resend(self, s: PartySession, queue: asyncio.Queue[bytes | None]) -> None:
        """On (re)connect: the run preambles first, then every request still waiting for a reply."""
        for nonce in [n for n, p in s.outstanding.items() if p.internal]:
            del s.outstanding[nonce]
        with self._lock:
            makers = list(self._preambles.values())
        preamble: list[PendingRequest] = []
        for make in makers:
            message = make(s.name)
            if message is None:
                continue
            nonce, frames = frames_for(message, kind=FrameKind.REQUEST, role="coordinator", limits=self.limits)
            pending = PendingRequest(message, nonce, frames, sum(map(len, frames)), internal=True)
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

    async def _read(self, s: PartySession, stream_id: int, identity: Identity, request_iterator: Any,
                    queue: asyncio.Queue[bytes | None], peer: str) -> None:
        assembler = Assembler(self.limits)
        violations, skip = 0, b""
        try:
            async for raw in request_iterator:
                if s.stream_id == stream_id:
                    s.last_seen = time.monotonic()
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

    def _accept(self, s: PartySession, identity: Identity, frame: Frame, assembler: Assembler) -> Any:
        if frame.sender != identity.name:
            raise EnvelopeError("wrong_identity", f"frame claims sender {frame.sender!r} on {identity.name!r}'s stream")
        if frame.role != "party":
            raise EnvelopeError("wrong_role", f"frame claims role {frame.role!r}; a party stream carries party frames")
        if frame.kind == FrameKind.HEARTBEAT:
            return None  # liveness only: `_read` stamped last_seen
        if frame.kind == FrameKind.REJECT:
            log.warning("party %s refused a frame (%s): %s", s.name, frame.code, frame.detail)
            pending = s.outstanding.pop(frame.in_reply_to, None)
            if pending is not None:  # the request it refused fails now, not at the timeout
                pending.future.set_exception(
                    PartyError(s.name, pending.kind, "Refused", f"{frame.code}: {frame.detail}"))
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
