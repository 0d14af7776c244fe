"""Test hooks shared by runtime and privacy tests: a coordinator crash after a saved round, reply capture.

A module of its own, not conftest.py: `from conftest import ...` resolves to whichever conftest.py pytest imported
last (tests/browser has one too), so helpers live under a unique name.
"""

from __future__ import annotations


class Crash(Exception):
    """Raised by CrashAfterRound to simulate a coordinator dying right after a round was saved."""


class CrashAfterRound:
    """A progress hook that kills the workflow (by exception) after round `n` has been checkpointed."""

    def __init__(self, n: int) -> None:
        self.n = n

    def run_started(self, *args: object) -> None: ...
    def round_started(self, *args: object) -> None: ...
    def party_done(self, *args: object) -> None: ...

    def round_finished(self, result) -> None:
        if result.round == self.n:
            raise Crash()


def capture_replies(transport) -> list:  # type: ignore[no-untyped-def]
    """Wrap ``transport.exchange`` so every reply a party sends is also kept in the returned list."""
    captured: list = []
    original = transport.exchange

    def capturing(messages):  # type: ignore[no-untyped-def]
        for reply in original(messages):
            captured.append(reply)
            yield reply

    transport.exchange = capturing
    return captured
