"""Progress events of an evaluation, for the CLI's display and the portal (issue 17).

A plain callback (no threads, no queues): the runner calls it from its own thread, once when a test
starts and once when it ends, so a caller can draw a bar or stream the events to a browser.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["ProgressEvent", "ProgressFn", "no_progress", "collect_progress"]

Phase = Literal["start", "end", "setup", "done"]


@dataclass(frozen=True)
class ProgressEvent:
    """One step of an evaluation: ``index`` counts from 1 to ``total``; ``verdict`` is set on ``end``."""

    phase: Phase
    test_id: str
    index: int
    total: int
    verdict: str | None = None
    seconds: float | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressFn = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:
    """The default callback: ignore the event."""


def collect_progress() -> tuple[list[ProgressEvent], ProgressFn]:
    """A list and a callback that appends to it (tests and simple callers)."""
    events: list[ProgressEvent] = []
    return events, events.append
