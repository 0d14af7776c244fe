"""The Transport interface: how a coordinator's workflow reaches parties.

Workflows only call `exchange`; whether the parties live in this process or behind gRPC with mutual
TLS is the transport's business. Replies are yielded one at a time so a coordinator can fold them
into a running aggregate without holding every party's update in memory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from sampan.errors import PartyError as PartyFailure
from sampan.wire import Message


class Endpoint(Protocol):
    """Anything that answers messages addressed to `name` (a PartyApp, or a test double)."""

    name: str

    def handle(self, message: Message) -> Message: ...


class PartyError(PartyFailure, RuntimeError):
    """A party answered with an error; names the party and the step that failed."""

    def __init__(self, party: str, kind: str, error_type: str, error: str) -> None:
        super().__init__(f"party {party!r} failed on {kind!r}: {error_type}: {error}")
        self.party, self.kind, self.error_type, self.error = party, kind, error_type, error


@dataclass
class TrafficLog:
    """Bytes and message counts per (party, direction, kind): the raw material of a privacy receipt."""

    messages: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    bytes: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))

    def record(self, party: str, direction: str, kind: str, size: int) -> None:
        key = (party, direction, kind)
        self.messages[key] += 1
        self.bytes[key] += size

    def summary(self) -> list[dict[str, object]]:
        return [
            {"party": p, "direction": d, "kind": k, "messages": n, "bytes": self.bytes[(p, d, k)]}
            for (p, d, k), n in sorted(self.messages.items())
        ]


class Transport(ABC):
    """Delivers coordinator requests to parties and returns their replies."""

    traffic: TrafficLog

    @property
    @abstractmethod
    def parties(self) -> list[str]:
        """Names of the parties reachable through this transport."""

    @abstractmethod
    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        """Send each message to its recipient and yield the replies as they arrive.

        Raises PartyError when a party answers with an error. Messages are consumed lazily, so a
        caller may pass a generator and never materialise one copy of the model per party.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the in-process transport has none."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raise_for_error(reply: Message) -> Message:
    """Turn an error reply into PartyError; pass any other reply through."""
    if reply.is_error:
        raise PartyError(
            reply.sender, str(reply.meta.get("request_kind", "?")),
            str(reply.meta.get("error_type", "Error")), str(reply.meta.get("error", "")),
        )
    return reply


def take_requests(source: Iterator[Message], known: frozenset[str], room: int) -> tuple[list[Message], bool]:
    """Up to ``room`` more requests from ``source`` (each checked to go to a known party) and whether
    ``source`` is now exhausted: how a transport refills its window of requests in flight."""
    taken: list[Message] = []
    while len(taken) < room:
        try:
            message = next(source)
        except StopIteration:
            return taken, True
        if message.recipient not in known:
            raise KeyError(f"no party named {message.recipient!r}; known: {sorted(known)}")
        taken.append(message)
    return taken, False


# What a dead or unreachable party looks like to a coordinator: an error reply, or the transport giving up.
DROPOUT_ERRORS: tuple[type[BaseException], ...] = (PartyError, TimeoutError, ConnectionError)


def exchange_settled(transport: Transport, messages: Iterable[Message]) -> dict[str, Message | BaseException]:
    """One fan-out (at most one message per party) in which a failing party does not stop the others:
    recipient -> its reply, or the error that stands for it (a dropout). Protocols that absorb dropouts
    (SecAgg+ stages) use it so a stage costs one `exchange` whatever the number of parties.

    A transport may offer its own ``exchange_settled`` (every reply of one concurrent fan-out); otherwise
    the requests after a failed one are sent again in a further exchange (only when a party failed)."""
    native = getattr(transport, "exchange_settled", None)
    if callable(native):
        return dict(native(messages))
    pending = list(messages)
    results: dict[str, Message | BaseException] = {}
    while pending:
        try:
            for reply in transport.exchange(pending):
                results[reply.sender] = reply
            break
        except DROPOUT_ERRORS as exc:
            unanswered = [m.recipient for m in pending if m.recipient not in results]
            failed = getattr(exc, "party", None)
            results[failed if failed in unanswered else unanswered[0]] = exc
            pending = [m for m in pending if m.recipient not in results]
    return results
