"""Operator calls on the coordinator (Submit, Status, Cancel): one REQUEST frame in, one REPLY frame out.

Only a certificate with the operator role that is a member of the federation gets an answer; the
frame must carry the operator's own name and a fresh nonce (replays are refused). The coordinator's
handler runs off the event loop, so a slow store never stalls the party streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from sampan.transport.grpc_envelope import Assembler, EnvelopeError, FrameKind, frames_for, open_envelope, parse_frame
from sampan.transport.grpc_session import AuthenticationError, claimed_name

if TYPE_CHECKING:
    from sampan.transport.grpc_hub import Hub

__all__ = ["OPERATOR_METHODS", "operator_unary"]

OPERATOR_METHODS = ("Submit", "Status", "Cancel")


def operator_unary(hub: Hub, method: str) -> Callable[[bytes, grpc.aio.ServicerContext], Any]:
    """The gRPC unary handler of one operator method, served by ``hub``'s control handlers."""
    async def call(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            identity = await hub._identity(context, "operator")
        except AuthenticationError as exc:
            await hub._refuse(context, claimed_name(context), exc.code, str(exc), grpc.StatusCode.PERMISSION_DENIED)
            return b""
        try:
            frame = parse_frame(raw, hub.limits)
            if frame.kind != FrameKind.REQUEST or frame.role != "operator" or frame.sender != identity.name:
                raise EnvelopeError("wrong_role", f"{method} takes one REQUEST frame from the operator's own name")
            if frame.chunk_count != 1:
                raise EnvelopeError("too_large", f"{method} requests must fit in one chunk")
            hub._operator_guard.check(frame.nonce, frame.sent_at_ms)
            envelope = Assembler(hub.limits).feed(frame)
            assert envelope is not None
            hub._operator_guard.add(frame.nonce)
            message = open_envelope(envelope, hub.limits)
        except EnvelopeError as exc:
            await hub._refuse(context, identity.name, exc.code, str(exc), grpc.StatusCode.INVALID_ARGUMENT)
            return b""
        handler = hub._control.get(method)
        if handler is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not served here")
            return b""
        loop = asyncio.get_running_loop()
        try:
            reply = await loop.run_in_executor(None, handler, identity, message)
        except Exception as exc:  # noqa: BLE001 - reported to the operator
            reply = message.error_reply(exc)
        _, frames = frames_for(reply, kind=FrameKind.REPLY, role="coordinator", limits=hub.limits,
                               in_reply_to=frame.nonce)
        if len(frames) != 1:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{method} reply too large")
        return frames[0]
    return call
