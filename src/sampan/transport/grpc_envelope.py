"""The deployment envelope: protobuf frames that carry `sampan.wire` bytes, chunked, bound and replay-checked.

Why a second envelope around the wire codec: the codec says *what* a message is; the frame says *who
sent it to whom, for which run and step, and when*, with a random nonce so a receiver can refuse a
frame it has seen before. Large messages are cut into chunks (1 MiB by default) so no single gRPC
message grows with the model, and the receiver enforces a total-size limit before buffering.

The protobuf schema lives in ``grpc_frame.proto`` and is built here from a descriptor at import time,
so no generated code has to be kept in step with a compiler. Everything that arrives from the network
goes through `parse_frame` -> `Assembler.feed` -> `open_envelope` (which calls `sampan.wire.decode`),
and any problem surfaces as `EnvelopeError` with a `code` — never another exception type.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from sampan.errors import ProtocolError
from sampan.wire import Message, WireError, decode, encode

__all__ = [
    "DEPLOY_PROTOCOL_VERSION", "CHUNK_BYTES", "DEFAULT_MAX_MESSAGE_BYTES", "FrameKind", "Frame", "Envelope",
    "EnvelopeError", "Limits", "Assembler", "ReplayGuard", "parse_frame", "frames_for", "open_envelope",
    "control_frame", "new_nonce", "SERVICE", "CONNECT", "SUBMIT", "STATUS", "CANCEL",
]

DEPLOY_PROTOCOL_VERSION = 1
CHUNK_BYTES = 1 << 20
DEFAULT_MAX_MESSAGE_BYTES = 256 << 20
NONCE_BYTES = 16
MAX_NAME = 256          # run id, party names, role, code
MAX_DETAIL = 64 << 10   # human-readable text / small JSON
FRAME_OVERHEAD = 64 << 10

SERVICE = "sampan.deploy.v1.Federation"
CONNECT = f"/{SERVICE}/Connect"
SUBMIT = f"/{SERVICE}/Submit"
STATUS = f"/{SERVICE}/Status"
CANCEL = f"/{SERVICE}/Cancel"


class FrameKind:
    UNSPECIFIED = 0
    HELLO = 1
    WELCOME = 2
    REQUEST = 3
    REPLY = 4
    REJECT = 5
    HEARTBEAT = 6  # party -> coordinator, every `heartbeat_s` the WELCOME asked for: "still here" (no payload)

    NAMES = {0: "UNSPECIFIED", 1: "HELLO", 2: "WELCOME", 3: "REQUEST", 4: "REPLY", 5: "REJECT", 6: "HEARTBEAT"}


def _build_frame_class() -> Any:
    """The `Frame` protobuf class from a descriptor identical to grpc_frame.proto."""
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="sampan/deploy/v1/frame.proto", package="sampan.deploy.v1",
                                             syntax="proto3")
    enum = fdp.enum_type.add(name="FrameKind")
    for number, name in FrameKind.NAMES.items():
        enum.value.add(name="FRAME_KIND_UNSPECIFIED" if number == 0 else name, number=number)
    msg = fdp.message_type.add(name="Frame")
    for name, number, kind in FIELDS:
        field = msg.field.add(name=name, number=number, label=F.LABEL_OPTIONAL, type=kind)
        if kind == F.TYPE_ENUM:
            field.type_name = ".sampan.deploy.v1.FrameKind"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("sampan.deploy.v1.Frame"))


_T = descriptor_pb2.FieldDescriptorProto
FIELDS: tuple[tuple[str, int, int], ...] = (
    ("version", 1, _T.TYPE_UINT32), ("kind", 2, _T.TYPE_ENUM), ("run_id", 3, _T.TYPE_STRING),
    ("step", 4, _T.TYPE_UINT64), ("nonce", 5, _T.TYPE_BYTES), ("sender", 6, _T.TYPE_STRING),
    ("recipient", 7, _T.TYPE_STRING), ("role", 8, _T.TYPE_STRING), ("in_reply_to", 9, _T.TYPE_BYTES),
    ("chunk_index", 10, _T.TYPE_UINT32), ("chunk_count", 11, _T.TYPE_UINT32), ("total_bytes", 12, _T.TYPE_UINT64),
    ("payload", 13, _T.TYPE_BYTES), ("detail", 14, _T.TYPE_STRING), ("digest", 15, _T.TYPE_BYTES),
    ("sent_at_ms", 16, _T.TYPE_UINT64), ("code", 17, _T.TYPE_STRING),
)
ProtoFrame = _build_frame_class()


class EnvelopeError(ProtocolError, ValueError):
    """A frame or reassembled message that must be refused; `code` says why in one word."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Limits:
    """Size limits of one link. `max_frame_bytes` is also gRPC's max message length."""

    chunk_bytes: int = CHUNK_BYTES
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    replay_window_s: float = 600.0

    @property
    def max_frame_bytes(self) -> int:
        return self.chunk_bytes + FRAME_OVERHEAD

    @property
    def max_chunks(self) -> int:
        return max(1, -(-self.max_message_bytes // self.chunk_bytes))


@dataclass(frozen=True)
class Frame:
    """A parsed, field-checked frame (the protobuf object never leaves this module)."""

    version: int
    kind: int
    run_id: str
    step: int
    nonce: bytes
    sender: str
    recipient: str
    role: str
    in_reply_to: bytes
    chunk_index: int
    chunk_count: int
    total_bytes: int
    payload: bytes
    detail: str
    digest: bytes
    sent_at_ms: int
    code: str

    @property
    def kind_name(self) -> str:
        return FrameKind.NAMES.get(self.kind, str(self.kind))

    def to_bytes(self) -> bytes:
        return _serialize(**{name: getattr(self, name) for name, _, _ in FIELDS})


def _serialize(**fields: Any) -> bytes:
    return ProtoFrame(**{k: v for k, v in fields.items() if v}).SerializeToString()


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_frame(data: bytes, limits: Limits) -> Frame:
    """Bytes from the network -> a Frame whose every field is within bounds, or EnvelopeError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EnvelopeError("malformed", f"frame must be bytes, got {type(data).__name__}")
    if len(data) > limits.max_frame_bytes:
        raise EnvelopeError("too_large", f"frame of {len(data)} bytes exceeds the {limits.max_frame_bytes}-byte limit")
    try:
        proto = ProtoFrame.FromString(bytes(data))
    except (DecodeError, RuntimeError, ValueError, TypeError) as exc:
        raise EnvelopeError("malformed", f"not a Sampan frame (protobuf decode failed: {exc})") from None
    if proto.version != DEPLOY_PROTOCOL_VERSION:
        raise EnvelopeError("incompatible_version",
                            f"frame speaks deployment protocol {proto.version}; this side speaks "
                            f"{DEPLOY_PROTOCOL_VERSION}")
    if proto.kind not in FrameKind.NAMES or proto.kind == FrameKind.UNSPECIFIED:
        raise EnvelopeError("malformed", f"unknown frame kind {proto.kind}")
    for name in ("run_id", "sender", "recipient", "role", "code"):
        if len(getattr(proto, name)) > MAX_NAME:
            raise EnvelopeError("malformed", f"frame field {name} is longer than {MAX_NAME} characters")
    if len(proto.detail) > MAX_DETAIL:
        raise EnvelopeError("malformed", f"frame detail is longer than {MAX_DETAIL} characters")
    if len(proto.nonce) != NONCE_BYTES:
        raise EnvelopeError("malformed", f"frame nonce must be {NONCE_BYTES} bytes, got {len(proto.nonce)}")
    if proto.in_reply_to and len(proto.in_reply_to) != NONCE_BYTES:
        raise EnvelopeError("malformed", "frame in_reply_to must be empty or a 16-byte nonce")
    if proto.digest and len(proto.digest) != 32:
        raise EnvelopeError("malformed", "frame digest must be empty or 32 bytes (SHA-256)")
    if len(proto.payload) > limits.chunk_bytes:
        raise EnvelopeError("too_large", f"frame chunk of {len(proto.payload)} bytes exceeds {limits.chunk_bytes}")
    if proto.step >= 1 << 62:
        raise EnvelopeError("malformed", "frame step out of range")
    if proto.kind in (FrameKind.REQUEST, FrameKind.REPLY):
        if not 1 <= proto.chunk_count <= limits.max_chunks:
            raise EnvelopeError("too_large" if proto.chunk_count > limits.max_chunks else "malformed",
                                f"frame declares {proto.chunk_count} chunks; allowed 1..{limits.max_chunks}")
        if proto.chunk_index >= proto.chunk_count:
            raise EnvelopeError("malformed", f"chunk {proto.chunk_index} of {proto.chunk_count} is out of range")
        if proto.total_bytes > limits.max_message_bytes:
            raise EnvelopeError("too_large", f"message of {proto.total_bytes} bytes exceeds the "
                                f"{limits.max_message_bytes}-byte limit")
        if proto.total_bytes > proto.chunk_count * limits.chunk_bytes or proto.chunk_count > max(1, proto.total_bytes):
            raise EnvelopeError("malformed", f"{proto.chunk_count} chunks cannot hold {proto.total_bytes} bytes")
        if proto.chunk_index == 0 and len(proto.digest) != 32:
            raise EnvelopeError("malformed", "the first chunk of a message must carry its SHA-256 digest")
    return Frame(version=proto.version, kind=proto.kind, run_id=proto.run_id, step=proto.step, nonce=proto.nonce,
                 sender=proto.sender, recipient=proto.recipient, role=proto.role, in_reply_to=proto.in_reply_to,
                 chunk_index=proto.chunk_index, chunk_count=proto.chunk_count, total_bytes=proto.total_bytes,
                 payload=proto.payload, detail=proto.detail, digest=proto.digest, sent_at_ms=proto.sent_at_ms,
                 code=proto.code)


@dataclass(frozen=True)
class Envelope:
    """A reassembled message: the first frame's header fields and the whole `sampan.wire` bytes."""

    head: Frame
    data: bytes


def frames_for(message: Message, *, kind: int, role: str, limits: Limits, nonce: bytes | None = None,
               in_reply_to: bytes = b"", data: bytes | None = None) -> tuple[bytes, list[bytes]]:
    """Encode a message and cut it into frames. Returns (nonce, frames)."""
    data = encode(message) if data is None else data
    if len(data) > limits.max_message_bytes:
        raise EnvelopeError("too_large", f"message {message.kind!r} for {message.recipient!r} is {len(data)} bytes; "
                            f"the link limit is {limits.max_message_bytes}")
    nonce = nonce or new_nonce()
    size = limits.chunk_bytes
    count = max(1, -(-len(data) // size))
    digest = hashlib.sha256(data).digest()
    sent = now_ms()
    view = memoryview(data)
    frames = [
        _serialize(version=DEPLOY_PROTOCOL_VERSION, kind=kind, run_id=message.run_id, step=message.step, nonce=nonce,
                   sender=message.sender, recipient=message.recipient, role=role, in_reply_to=in_reply_to,
                   chunk_index=i, chunk_count=count, total_bytes=len(data),
                   payload=bytes(view[i * size:(i + 1) * size]),
                   digest=digest if i == 0 else b"", sent_at_ms=sent)
        for i in range(count)
    ]
    return nonce, frames


def control_frame(kind: int, *, sender: str, role: str, recipient: str = "", detail: str = "", code: str = "",
                  run_id: str = "", in_reply_to: bytes = b"") -> bytes:
    """HELLO / WELCOME / REJECT: no payload, JSON or text in `detail`."""
    return _serialize(version=DEPLOY_PROTOCOL_VERSION, kind=kind, nonce=new_nonce(), sender=sender, role=role,
                      recipient=recipient, detail=detail[:MAX_DETAIL], code=code, run_id=run_id,
                      in_reply_to=in_reply_to, sent_at_ms=now_ms())


def hello_detail(**fields: Any) -> str:
    return json.dumps(fields, separators=(",", ":"), sort_keys=True)


def parse_detail(frame: Frame) -> dict[str, Any]:
    """The JSON object in a HELLO/WELCOME frame's detail, or EnvelopeError."""
    try:
        value = json.loads(frame.detail) if frame.detail else {}
    except (ValueError, RecursionError) as exc:
        raise EnvelopeError("malformed", f"{frame.kind_name} detail is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise EnvelopeError("malformed", f"{frame.kind_name} detail must be a JSON object")
    return value


class Assembler:
    """Reassembles one stream's chunks into envelopes. One message at a time per stream (senders never interleave)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._head: Frame | None = None
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def busy(self) -> bool:
        return self._head is not None

    def reset(self) -> None:
        self._head, self._parts, self._size = None, [], 0

    def feed(self, frame: Frame) -> Envelope | None:
        """Add a REQUEST/REPLY frame; returns the envelope when its last chunk arrives."""
        if frame.kind not in (FrameKind.REQUEST, FrameKind.REPLY):
            raise EnvelopeError("malformed", f"{frame.kind_name} frames carry no message")
        head = self._head
        if head is None:
            if frame.chunk_index != 0:
                raise EnvelopeError("malformed", f"chunk {frame.chunk_index} arrived without chunk 0")
            self._head, self._parts, self._size = frame, [], 0
            head = frame
        else:
            same = (frame.nonce == head.nonce and frame.kind == head.kind and frame.chunk_count == head.chunk_count
                    and frame.total_bytes == head.total_bytes and frame.run_id == head.run_id
                    and frame.step == head.step and frame.sender == head.sender and frame.recipient == head.recipient
                    and frame.in_reply_to == head.in_reply_to)
            if not same or frame.chunk_index != len(self._parts):
                self.reset()
                raise EnvelopeError("malformed", "chunks of two messages are interleaved or out of order")
        self._size += len(frame.payload)
        if self._size > head.total_bytes:
            self.reset()
            raise EnvelopeError("malformed", f"chunks carry more than the declared {head.total_bytes} bytes")
        self._parts.append(frame.payload)
        if len(self._parts) < head.chunk_count:
            return None
        data = b"".join(self._parts)
        self.reset()
        if len(data) != head.total_bytes:
            raise EnvelopeError("malformed", f"message has {len(data)} bytes; {head.total_bytes} were declared")
        if hashlib.sha256(data).digest() != head.digest:
            raise EnvelopeError("malformed", "message bytes do not match their SHA-256 digest")
        return Envelope(head, data)


def open_envelope(envelope: Envelope, limits: Limits) -> Message:
    """Decode the message with `sampan.wire.decode` and check it is bound to its frame."""
    try:
        message = decode(envelope.data, max_message_bytes=limits.max_message_bytes)
    except WireError as exc:
        raise EnvelopeError("malformed", f"message does not decode: {exc}") from None
    head = envelope.head
    for name in ("run_id", "step", "sender", "recipient"):
        if getattr(message, name) != getattr(head, name):
            raise EnvelopeError("binding", f"message {name} {getattr(message, name)!r} differs from its frame's "
                                f"{getattr(head, name)!r}")
    return message


class ReplayGuard:
    """Refuses a nonce seen before, or a frame stamped outside the window (memory bounded by the window)."""

    def __init__(self, window_s: float = 600.0, max_entries: int = 1_000_000) -> None:
        self.window_ms = int(window_s * 1000)
        self.max_entries = max_entries
        self._seen: OrderedDict[bytes, int] = OrderedDict()

    def check(self, nonce: bytes, sent_at_ms: int, now: int | None = None) -> None:
        now = now_ms() if now is None else now
        self._prune(now)
        if abs(now - sent_at_ms) > self.window_ms:
            raise EnvelopeError("replay", f"frame stamped {(now - sent_at_ms) / 1000:+.0f} s from now is outside "
                                f"the {self.window_ms // 1000} s replay window (old or replayed, or clocks differ)")
        if nonce in self._seen:
            raise EnvelopeError("replay", f"nonce {nonce.hex()[:12]}… was seen before: replayed frame")

    def add(self, nonce: bytes, now: int | None = None) -> None:
        self._seen[nonce] = now_ms() if now is None else now
        self._seen.move_to_end(nonce)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)

    def _prune(self, now: int) -> None:
        while self._seen:
            nonce, at = next(iter(self._seen.items()))
            if now - at <= self.window_ms:
                break
            self._seen.popitem(last=False)
