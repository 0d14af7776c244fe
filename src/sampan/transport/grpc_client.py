"""Party side of the gRPC transport: dial out to the coordinator, answer its requests, reconnect.

A party never listens on a port. It opens one bidirectional `Connect` stream, sends HELLO (name,
protocol versions, capabilities) and then answers each REQUEST with a REPLY bound to it
(`in_reply_to` = the request's nonce). Requests are handled one at a time, in order, so stateful
protocols (vertical FL) see exactly the sequence the coordinator sent.

When the stream breaks the party reconnects with exponential backoff and jitter. Replies are kept in
a small cache keyed by the request nonce: the coordinator re-sends whatever was outstanding, and a
request seen before is answered from the cache instead of being run twice. A coordinator refusal that
cannot heal by retrying (incompatible version, not a member, revoked certificate) stops the agent
with `FatalRejection` and the coordinator's reason.

While connected, a party sends a HEARTBEAT frame every `heartbeat_s` the coordinator's WELCOME asks
for, from its own thread, so a party busy with a long request is still seen alive and a hung or
vanished one is named by the coordinator within seconds.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from sampan.errors import PartyError
from sampan.transport.grpc_envelope import (
    CANCEL,
    CONNECT,
    DEPLOY_PROTOCOL_VERSION,
    STATUS,
    SUBMIT,
    Assembler,
    EnvelopeError,
    Frame,
    FrameKind,
    Limits,
    ReplayGuard,
    control_frame,
    frames_for,
    hello_detail,
    open_envelope,
    parse_detail,
    parse_frame,
)
from sampan.wire import PROTOCOL_VERSION, Message, WireError, encode

__all__ = ["FatalRejection", "LinkSettings", "PartyLink", "channel_options", "operator_call"]

log = logging.getLogger("sampan.deploy.party")
security_log = logging.getLogger("sampan.deploy.security")

FATAL_STATUS = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.UNAUTHENTICATED}
FATAL_CODES = {"incompatible_version", "not_a_member", "wrong_role", "wrong_identity", "revoked", "pin_mismatch"}

Handler = Callable[[Message], Message]


class FatalRejection(PartyError, RuntimeError):
    """The coordinator refused this party for a reason retrying cannot fix."""


@dataclass(frozen=True)
class LinkSettings:
    name: str
    address: str
    coordinator_name: str = "coordinator"
    target_name: str | None = None      # TLS name on the coordinator's certificate, if not the address's host
    limits: Limits = field(default_factory=Limits)
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    max_violations: int = 5
    cache_entries: int = 32
    capabilities: tuple[str, ...] = ()
    agent: str = "sampan"


def channel_options(limits: Limits, target_name: str | None) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", 2 * limits.max_frame_bytes),
        ("grpc.max_send_message_length", limits.max_frame_bytes),
        ("grpc.keepalive_time_ms", 15_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.enable_retries", 0),
    ]
    if target_name:
        options.append(("grpc.ssl_target_name_override", target_name))
    return options


class PartyLink:
    """One party's connection to the coordinator; `serve_forever` until stopped or fatally refused."""

    def __init__(self, settings: LinkSettings, handler: Handler, credentials: grpc.ChannelCredentials, *,
                 preflight: Callable[[], None] | None = None,
                 tap: Callable[[str, bytes], None] | None = None) -> None:
        self.settings = settings
        self.handler = handler
        self.credentials = credentials
        self.preflight = preflight
        self.tap = tap
        self.limits = settings.limits
        self.guard = ReplayGuard(self.limits.replay_window_s)
        self._cache: OrderedDict[bytes, tuple[bytes, Message, bytes]] = OrderedDict()
        self._outbound: queue.Queue[bytes | None] | None = None
        self._call: Any = None
        self.sessions = 0
        self.connected = threading.Event()

    # --- lifecycle ----------------------------------------------------------------------------------
    def serve_forever(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        delay = self.settings.backoff_initial_s
        while not stop.is_set():
            welcomed = False
            try:
                if self.preflight is not None:
                    self.preflight()
                welcomed = self._session(stop)
            except FatalRejection:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of one session means: reconnect
                log.warning("%s: connection to %s failed: %s", self.settings.name, self.settings.address,
                            _describe(exc))
            self.connected.clear()
            if stop.is_set():
                break
            if welcomed:
                delay = self.settings.backoff_initial_s
            pause = delay * random.uniform(0.8, 1.2)
            log.info("%s: reconnecting in %.1f s", self.settings.name, pause)
            stop.wait(pause)
            delay = min(delay * 2, self.settings.backoff_max_s)

    def close(self) -> None:
        """Cancel the current stream (use with the stop event of `serve_forever`)."""
        call = self._call
        if call is not None:
            call.cancel()

    # --- one connection -----------------------------------------------------------------------------
    def _session(self, stop: threading.Event) -> bool:
        s = self.settings
        outbound: queue.Queue[bytes | None] = queue.Queue()
        hello = control_frame(FrameKind.HELLO, sender=s.name, role="party", recipient=s.coordinator_name,
                              detail=hello_detail(protocol=DEPLOY_PROTOCOL_VERSION, wire_version=PROTOCOL_VERSION,
                                                  capabilities=list(s.capabilities), agent=s.agent,
                                                  heartbeat=True))

        def requests() -> Iterator[bytes]:
            yield hello
            while True:
                item = outbound.get()
                if item is None:
                    return
                if self.tap is not None:
                    self.tap("to_coordinator", item)
                yield item

        channel = grpc.secure_channel(s.address, self.credentials, options=channel_options(self.limits, s.target_name))
        call = channel.stream_stream(CONNECT)(requests())
        self._call, self._outbound = call, outbound
        self.sessions += 1
        welcomed = False
        beating = threading.Event()  # set when this session ends: stops its heartbeat thread
        assembler = Assembler(self.limits)
        violations, skip = 0, b""
        try:
            for raw in call:
                if self.tap is not None:
                    self.tap("from_coordinator", raw)
                frame: Frame | None = None
                try:
                    frame = parse_frame(raw, self.limits)
                    if frame.kind == FrameKind.WELCOME:
                        welcomed = True
                        self.connected.set()
                        detail = parse_detail(frame)
                        log.info("%s: connected to %s (%s)", s.name, s.address, detail)
                        self._start_heartbeats(detail.get("heartbeat_s"), outbound, beating)
                        continue
                    if frame.kind == FrameKind.REJECT:
                        log.warning("%s: coordinator refused a frame (%s): %s", s.name, frame.code, frame.detail)
                        if frame.code in FATAL_CODES:
                            raise FatalRejection(f"{frame.code}: {frame.detail}")
                        continue
                    if skip and frame.nonce == skip:
                        continue
                    skip = b""
                    self._check_origin(frame)
                    if frame.chunk_index == 0 and frame.nonce in self._cache:
                        skip = frame.nonce if frame.chunk_count > 1 else b""
                        self._resend_cached(frame.nonce, outbound)
                        continue
                    if frame.chunk_index == 0:
                        self.guard.check(frame.nonce, frame.sent_at_ms)
                    envelope = assembler.feed(frame)
                except EnvelopeError as exc:
                    violations += 1
                    assembler.reset()
                    skip = frame.nonce if frame is not None else b""
                    security_log.warning("%s: rejected a frame from the coordinator (%s): %s", s.name, exc.code, exc)
                    outbound.put(control_frame(FrameKind.REJECT, sender=s.name, role="party", code=exc.code,
                                               recipient=s.coordinator_name, detail=str(exc),
                                               in_reply_to=frame.nonce if frame is not None else b""))
                    if violations >= self.settings.max_violations:
                        raise ConnectionError(
                            f"{violations} refused frames from the coordinator; reconnecting") from exc
                    continue
                if envelope is None:
                    continue
                self.guard.add(envelope.head.nonce)
                self._answer(envelope, outbound)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            if code in FATAL_STATUS:
                raise FatalRejection(f"coordinator refused {s.name!r}: {details}") from None
            if not stop.is_set() and code != grpc.StatusCode.CANCELLED:
                raise ConnectionError(f"{code.name if code else 'error'}: {details}") from None
        finally:
            beating.set()
            outbound.put(None)
            call.cancel()
            channel.close()
            self._call = None
        return welcomed

    def _start_heartbeats(self, interval: Any, outbound: queue.Queue[bytes | None], done: threading.Event) -> None:
        """Every `interval` seconds a HEARTBEAT frame, until `done`: the coordinator's proof this party lives
        (sent from this thread, so a long-running handler does not silence it)."""
        if not isinstance(interval, (int, float)) or not 0.05 <= interval <= 3600:
            return  # an older coordinator asks for none
        s = self.settings

        def beat() -> None:
            while not done.wait(float(interval)):
                outbound.put(control_frame(FrameKind.HEARTBEAT, sender=s.name, role="party",
                                           recipient=s.coordinator_name))

        threading.Thread(target=beat, name=f"sampan-heartbeat-{s.name}", daemon=True).start()

    def _check_origin(self, frame: Frame) -> None:
        s = self.settings
        if frame.kind != FrameKind.REQUEST:
            raise EnvelopeError("wrong_role", f"the coordinator sends REQUEST frames here, not {frame.kind_name}")
        if frame.role != "coordinator" or frame.sender != s.coordinator_name:
            raise EnvelopeError("wrong_role", f"request from {frame.sender!r} in role {frame.role!r}; only "
                                f"{s.coordinator_name!r} sends requests")
        if frame.recipient != s.name:
            raise EnvelopeError("binding", f"request addressed to {frame.recipient!r}, not {s.name!r}")

    def _answer(self, envelope: Any, outbound: queue.Queue[bytes | None]) -> None:
        request_nonce = envelope.head.nonce
        try:
            request = open_envelope(envelope, self.limits)
        except EnvelopeError as exc:
            security_log.warning("%s: refused a request (%s): %s", self.settings.name, exc.code, exc)
            outbound.put(control_frame(FrameKind.REJECT, sender=self.settings.name, role="party", code=exc.code,
                                       recipient=self.settings.coordinator_name, detail=str(exc),
                                       in_reply_to=request_nonce))
            return
        reply = self.handler(request)
        try:
            data = encode(reply)
        except WireError as exc:
            reply = request.error_reply(exc)
            data = encode(reply)
        nonce, frames = frames_for(reply, kind=FrameKind.REPLY, role="party", limits=self.limits,
                                   in_reply_to=request_nonce, data=data)
        self._cache[request_nonce] = (nonce, reply, data)
        while len(self._cache) > self.settings.cache_entries:
            self._cache.popitem(last=False)
        current = self._outbound
        if current is not None:
            for frame in frames:
                current.put(frame)

    def _resend_cached(self, request_nonce: bytes, outbound: queue.Queue[bytes | None]) -> None:
        nonce, reply, data = self._cache[request_nonce]
        log.info("%s: request %s re-sent after a reconnect; answering from the reply cache", self.settings.name,
                 request_nonce.hex()[:12])
        _, frames = frames_for(reply, kind=FrameKind.REPLY, role="party", limits=self.limits, nonce=nonce,
                               in_reply_to=request_nonce, data=data)
        for frame in frames:
            outbound.put(frame)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


def operator_call(address: str, credentials: grpc.ChannelCredentials, method: str, message: Message, *,
                  target_name: str | None = None, limits: Limits | None = None, timeout: float = 30.0) -> Message:
    """One Submit/Status/Cancel call as an operator; returns the coordinator's reply message."""
    limits = limits or Limits()
    path = {"Submit": SUBMIT, "Status": STATUS, "Cancel": CANCEL}[method]
    _, frames = frames_for(message, kind=FrameKind.REQUEST, role="operator", limits=limits)
    if len(frames) != 1:
        raise ValueError(f"{method} request is larger than one chunk ({limits.chunk_bytes} bytes)")
    with grpc.secure_channel(address, credentials, options=channel_options(limits, target_name)) as channel:
        raw = channel.unary_unary(path)(frames[0], timeout=timeout)
    frame = parse_frame(raw, limits)
    envelope = Assembler(limits).feed(frame)
    assert envelope is not None
    return open_envelope(envelope, limits)
