"""The coordinator side's small types: who a peer is, hub settings, one request in flight, one party's session.

Kept apart from the hub's stream logic (`grpc_hub`) so the certificate checks (`sampan.deploy.cert_checks`)
and the transport (`grpc_transport`) can import them without the server.

Liveness: a party that announces ``heartbeat_s`` in its HELLO sends a HEARTBEAT frame that often, from a
thread of its own, also while it computes a long request; the hub stamps ``last_seen`` on every frame.
A connected party silent for ``silent_after_s`` is named (log, status) and the requests waiting on it
fail with a PartyError naming it, instead of waiting for the request timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import grpc.aio

from sampan.errors import ProtocolError
from sampan.transport.grpc_envelope import Limits, ReplayGuard
from sampan.wire import Message

__all__ = ["Identity", "AuthenticationError", "Authenticator", "HubSettings", "server_options", "PendingRequest",
           "PartySession", "claimed_name"]


@dataclass(frozen=True)
class Identity:
    """Who is on the other end of a stream, as established by its mutual-TLS certificate."""

    name: str
    role: str
    fingerprint: str = ""


class AuthenticationError(ProtocolError):
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
    # a disconnected party may rejoin (a restarted agent) within this; its requests fail after it, naming it
    rejoin_timeout_s: float = 30.0
    max_violations: int = 5
    max_in_flight: int | None = None
    heartbeat_s: float = 1.0        # asked of the parties in WELCOME
    silent_after_s: float = 6.0     # a connected party silent this long is named and its requests fail


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


class PendingRequest:
    """One request in flight: its frames (kept for re-sending) and the future its reply lands in."""

    __slots__ = ("nonce", "party", "kind", "run_id", "step", "frames", "size", "future", "internal")

    def __init__(self, message: Message, nonce: bytes, frames: list[bytes], size: int, internal: bool = False) -> None:
        self.nonce, self.frames, self.size, self.internal = nonce, frames, size, internal
        self.party, self.kind, self.run_id, self.step = message.recipient, message.kind, message.run_id, message.step
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()


class PartySession:
    """A party's state across its connections (lives on the hub's loop)."""

    def __init__(self, name: str, replay_window_s: float = 600.0) -> None:
        self.name = name
        self.stream_id = 0
        self.connected = False
        self.since = time.monotonic()      # when it last connected or disconnected
        self.last_seen = 0.0               # monotonic time of its last frame (0: never)
        self.heartbeats = False            # it promised heartbeats in its HELLO (silence then means trouble)
        self.queue: asyncio.Queue[bytes | None] | None = None
        self.outstanding: OrderedDict[bytes, PendingRequest] = OrderedDict()
        self.abandoned: OrderedDict[bytes, None] = OrderedDict()
        self.guard = ReplayGuard(replay_window_s)
        self.peer = ""
        self.connections = 0
        self.cert_pem: bytes | None = None
        self.cut: tuple[str, str] | None = None   # (code, reason) when the hub cut this party's stream

    def silent_for(self, now: float | None = None) -> float:
        """Seconds since its last frame on a live heartbeat stream; 0 when it is not expected to beat."""
        if not (self.connected and self.heartbeats and self.last_seen):
            return 0.0
        return (now if now is not None else time.monotonic()) - self.last_seen

    def health(self, silent_after_s: float) -> dict[str, Any]:
        """What an operator sees: connected or for how long gone, and silence on a live stream."""
        now = time.monotonic()
        silent = self.silent_for(now)
        state = ("silent" if silent > silent_after_s else "connected") if self.connected else "disconnected"
        return {"party": self.name, "state": state, "peer": self.peer,
                "seconds": round(silent if self.connected else now - self.since, 1),
                "outstanding": len(self.outstanding)}


def claimed_name(context: grpc.aio.ServicerContext) -> str:
    """The CN a refused peer's certificate claims (unverified: for the log and audit entry only)."""
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        pem = (context.auth_context().get("x509_pem_cert") or [None])[0]
        if not pem:
            return ""
        names = x509.load_pem_x509_certificate(pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return f"{names[0].value!s} (claimed)" if names else ""
    except Exception:  # noqa: BLE001 - best effort
        return ""
