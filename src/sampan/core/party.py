"""Party side: a PartyApp maps message kinds to handlers; Mods wrap handlers.

A Mod is the place for cross-cutting party-side protection (DP noise, secure-aggregation masking,
auditing): it sees the request and the handler's reply and may transform either, so protocols stay
free of privacy plumbing (the Flower "mod" idea).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sampan.wire import Message

Handler = Callable[[Message], Message]
Mod = Callable[[Message, Handler], Message]

log = logging.getLogger(__name__)


class PartyApp:
    """One organisation's endpoint. Its data stays inside its handlers' closures."""

    def __init__(self, name: str, mods: list[Mod] | None = None) -> None:
        self.name = name
        self._handlers: dict[str, Handler] = {}
        self.mods: list[Mod] = list(mods or [])

    def register(self, kind: str, handler: Handler) -> None:
        if kind in self._handlers:
            raise ValueError(f"party {self.name!r} already handles {kind!r}")
        self._handlers[kind] = handler

    def handler(self, kind: str) -> Callable[[Handler], Handler]:
        """Decorator form of `register`."""
        def decorate(fn: Handler) -> Handler:
            self.register(kind, fn)
            return fn
        return decorate

    @property
    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    def handle(self, message: Message) -> Message:
        """Dispatch one request; failures become an error reply naming this party, never a crash."""
        try:
            if message.recipient != self.name:
                raise ValueError(f"message for {message.recipient!r} delivered to {self.name!r}")
            handler = self._handlers.get(message.kind)
            if handler is None:
                raise ValueError(f"party {self.name!r} does not handle {message.kind!r} (handles {self.kinds})")
            call: Handler = handler
            for mod in reversed(self.mods):
                call = _wrap(mod, call)
            return call(message)
        except Exception as exc:  # reported to the coordinator as a typed error reply
            log.warning("party %s failed on %s: %s", self.name, message.kind, exc)
            return message.error_reply(exc)


def _wrap(mod: Mod, inner: Handler) -> Handler:
    return lambda message: mod(message, inner)
