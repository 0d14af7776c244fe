"""In-process transport for simulation, tests and the demo.

Every message is encoded to bytes and decoded on the other side, exactly as it would be over gRPC,
so a handler can never receive (or return) anything a real deployment could not carry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from sampan.core.transport import Endpoint, TrafficLog, Transport, raise_for_error
from sampan.wire import Message, decode, encode


class InProcessTransport(Transport):
    def __init__(self, apps: Mapping[str, Endpoint], *, coordinator: str = "coordinator") -> None:
        for name, app in apps.items():
            if app.name != name:
                raise ValueError(f"party app registered as {name!r} calls itself {app.name!r}")
        self._apps = dict(apps)
        self.coordinator = coordinator
        self.traffic = TrafficLog()

    @property
    def parties(self) -> list[str]:
        return list(self._apps)

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        for message in messages:
            app = self._apps.get(message.recipient)
            if app is None:
                raise KeyError(f"no party named {message.recipient!r}; known: {sorted(self._apps)}")
            request = encode(message)
            self.traffic.record(message.recipient, "received", message.kind, len(request))
            reply_bytes = encode(app.handle(decode(request)))
            reply = decode(reply_bytes)
            self.traffic.record(message.recipient, "sent", reply.kind, len(reply_bytes))
            yield raise_for_error(reply)
