"""`GrpcTransport`: the `Transport` contract over the coordinator hub's party streams.

Every message of one `exchange` call is pushed down its party's stream at once (up to a window of
requests in flight, at least two per party), so N parties cost one round trip, not N; replies are
yielded in request order, so aggregation sums in the same order as in process (bit-identical).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from sampan.core.transport import TrafficLog, Transport, raise_for_error, take_requests
from sampan.transport.grpc_session import PendingRequest
from sampan.wire import Message

if TYPE_CHECKING:
    from sampan.transport.grpc_hub import Hub

__all__ = ["GrpcTransport"]


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
        window: deque[PendingRequest] = deque()
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
