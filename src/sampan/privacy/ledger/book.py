"""The Ledger: per party, the composed state of every DP event, checked against its budget before it is recorded.

Why apart: this is the accounting (dp-accounting RDP or PLD, incremental, write-ahead JSON); the values it
accounts are in `events`, the errors it raises in `exceeded`.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from sampan.privacy.composition import _PldState, _RdpState, _State
from sampan.privacy.ledger.events import (
    ACCOUNTANTS,
    DEFAULT_PLD_VALUE_DISCRETIZATION_INTERVAL,
    DEFAULT_RDP_ORDERS,
    LEVELS,
    NEIGHBOURING_RELATION,
    UNIT_OF_PRIVACY,
    AccountantKind,
    Budget,
    Level,
    PrivacyEvent,
    _positive_finite,
)
from sampan.privacy.ledger.exceeded import BudgetExceeded, UnknownPartyError

_FORMAT = "sampan.privacy.ledger"
_VERSION = 1


class _PartyBook:
    """A party's budget and composed states: all levels together, and each level alone."""

    __slots__ = ("budget", "total", "by_level", "n_events", "n_compositions")

    def __init__(self, budget: Budget, empty: _State) -> None:
        self.budget = budget
        self.total = empty
        self.by_level: dict[Level, _State] = {level: empty for level in LEVELS}
        self.n_events: dict[Level, int] = {level: 0 for level in LEVELS}
        self.n_compositions: dict[Level, int] = {level: 0 for level in LEVELS}


class Ledger:
    """Accounts every DP event per (party, level) and refuses the one that would exceed a party's budget.

    ``spent(party)`` composes all of the party's events across levels and reads epsilon at the party's
    budget delta. ``spent(party, level)`` composes that level's events alone; composition is sub-additive,
    so per-level epsilons need not add up to the total. Thread-safe: record/check take a lock.
    """

    def __init__(
        self,
        budgets: Mapping[str, Budget],
        accountant: AccountantKind = "rdp",
        *,
        rdp_orders: Sequence[float] | None = None,
        pld_value_discretization_interval: float = DEFAULT_PLD_VALUE_DISCRETIZATION_INTERVAL,
    ) -> None:
        if accountant not in ACCOUNTANTS:
            raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")
        self._accountant: AccountantKind = accountant
        orders = DEFAULT_RDP_ORDERS if rdp_orders is None else tuple(float(o) for o in rdp_orders)
        if not orders or any(not (o > 1 and math.isfinite(o)) for o in orders):
            raise ValueError("rdp_orders must be a non-empty sequence of finite orders > 1")
        self._orders = orders
        self._interval = _positive_finite("pld_value_discretization_interval", pld_value_discretization_interval)
        empty: _State = _RdpState.empty(orders) if accountant == "rdp" else _PldState(self._interval)
        self._books: dict[str, _PartyBook] = {}
        for party, budget in budgets.items():
            if not isinstance(party, str) or not party:
                raise ValueError(f"party names must be non-empty strings, got {party!r}")
            if not isinstance(budget, Budget):
                raise TypeError(f"budget for party {party!r} must be a Budget, got {type(budget).__name__}")
            self._books[party] = _PartyBook(budget, empty)
        self._events: list[PrivacyEvent] = []
        self._lock = threading.RLock()

    # -- queries ------------------------------------------------------------------------------------------

    @property
    def accountant(self) -> AccountantKind:
        return self._accountant

    @property
    def parties(self) -> tuple[str, ...]:
        return tuple(self._books)

    @property
    def events(self) -> tuple[PrivacyEvent, ...]:
        """Every recorded event, in order (the audit trail behind the numbers)."""
        return tuple(self._events)

    def budget(self, party: str) -> Budget:
        return self._book(party).budget

    def spent(self, party: str, level: Level | None = None) -> float:
        """Epsilon spent by ``party`` at its budget delta: all levels composed, or one level alone."""
        book = self._book(party)
        if level is None:
            return book.total.epsilon(book.budget.delta)
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS} or None, got {level!r}")
        return book.by_level[level].epsilon(book.budget.delta)

    def remaining(self, party: str) -> float:
        """Budget epsilon not yet spent (never negative)."""
        book = self._book(party)
        return max(0.0, book.budget.epsilon - book.total.epsilon(book.budget.delta))

    def summary(self) -> dict[str, Any]:
        """JSON-able per-party account for the privacy receipt."""
        note = (
            "epsilon_by_level composes each level's events alone; composition is sub-additive, so the levels"
            " need not add up to epsilon_spent, which composes all levels together and is what the budget binds"
        )
        parties: dict[str, Any] = {}
        with self._lock:
            for party, book in self._books.items():
                delta = book.budget.delta
                total = book.total.epsilon(delta)
                parties[party] = {
                    "budget": book.budget.to_dict(),
                    "epsilon_spent": total,
                    "epsilon_remaining": max(0.0, book.budget.epsilon - total),
                    "epsilon_by_level": {lvl: book.by_level[lvl].epsilon(delta) for lvl in LEVELS},
                    "events_by_level": dict(book.n_events),
                    "compositions_by_level": dict(book.n_compositions),
                    "accountant": self._accountant,
                    "unit_of_privacy": UNIT_OF_PRIVACY,
                }
        return {
            "accountant": self._accountant,
            "unit_of_privacy": UNIT_OF_PRIVACY,
            "neighbouring_relation": NEIGHBOURING_RELATION,
            "note": note,
            "parties": parties,
        }

    # -- charging -----------------------------------------------------------------------------------------

    def check(self, events: Sequence[PrivacyEvent]) -> None:
        """Raise BudgetExceeded if recording all ``events`` would exceed any party's budget; record nothing."""
        events = list(events)
        grouped: dict[str, list[PrivacyEvent]] = {}
        for event in events:
            if not isinstance(event, PrivacyEvent):
                raise TypeError(f"expected PrivacyEvent, got {type(event).__name__}")
            self._book(event.party)
            grouped.setdefault(event.party, []).append(event)
        with self._lock:
            failing = [
                party
                for party, party_events in grouped.items()
                if self._books[party].total.plus(party_events).epsilon(self._books[party].budget.delta)
                > self._books[party].budget.epsilon
            ]
            if failing:
                raise self._first_crossing(events, failing)

    def record(self, event: PrivacyEvent) -> None:
        """Charge ``event`` to its party; raise BudgetExceeded (recording nothing) if it would overspend."""
        if not isinstance(event, PrivacyEvent):
            raise TypeError(f"expected PrivacyEvent, got {type(event).__name__}")
        book = self._book(event.party)
        with self._lock:
            total = book.total.plus([event])
            if total.epsilon(book.budget.delta) > book.budget.epsilon:
                raise self._exceeded(book, event, [event])
            self._commit(book, event, total)

    # -- persistence ----------------------------------------------------------------------------------------

    def to_json(self) -> str:
        """Budgets, accountant settings and every event; spent budget is recomputed from them on load."""
        with self._lock:
            payload = {
                "format": _FORMAT,
                "version": _VERSION,
                "accountant": self._accountant,
                "rdp_orders": list(self._orders),
                "pld_value_discretization_interval": self._interval,
                "budgets": {party: book.budget.to_dict() for party, book in self._books.items()},
                "events": [event.to_dict() for event in self._events],
            }
        return json.dumps(payload, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Ledger:
        """Rebuild a ledger by replaying its events (same order, same settings, so identical spent())."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"not a {_FORMAT} document")
        if data.get("version") != _VERSION:
            raise ValueError(f"unsupported {_FORMAT} version {data.get('version')!r} (expected {_VERSION})")
        ledger = cls(
            {party: Budget.from_dict(b) for party, b in data["budgets"].items()},
            data["accountant"],
            rdp_orders=data["rdp_orders"],
            pld_value_discretization_interval=data["pld_value_discretization_interval"],
        )
        for raw in data["events"]:
            event = PrivacyEvent.from_dict(raw)
            book = ledger._book(event.party)
            # No budget check on replay: these events happened; a resumed run is stopped by its next record.
            ledger._commit(book, event, book.total.plus([event]))
        return ledger

    # -- internals ------------------------------------------------------------------------------------------

    def _book(self, party: str) -> _PartyBook:
        try:
            return self._books[party]
        except KeyError:
            raise UnknownPartyError(party, list(self._books)) from None

    def _commit(self, book: _PartyBook, event: PrivacyEvent, total: _State) -> None:
        book.total = total
        book.by_level[event.level] = book.by_level[event.level].plus([event])
        book.n_events[event.level] += 1
        book.n_compositions[event.level] += event.count
        self._events.append(event)

    def _exceeded(self, book: _PartyBook, event: PrivacyEvent, pending: Sequence[PrivacyEvent]) -> BudgetExceeded:
        """Build the error for ``pending`` (the party's candidate events, ending with the one that crosses)."""
        delta = book.budget.delta
        by_level: dict[str, float] = {}
        for level in LEVELS:
            level_events = [e for e in pending if e.level == level]
            state = book.by_level[level].plus(level_events) if level_events else book.by_level[level]
            if state.n_events:
                by_level[level] = state.epsilon(delta)
        return BudgetExceeded(
            event.party,
            event.level,
            book.total.plus(pending).epsilon(delta),
            book.budget,
            spent=book.total.epsilon(delta),
            by_level=by_level,
            step=event.step,
            note=event.note,
        )

    def _first_crossing(self, events: Sequence[PrivacyEvent], failing: Sequence[str]) -> BudgetExceeded:
        """Among parties that overspend, name the event (earliest in ``events``) that first crosses a budget."""
        best: tuple[int, BudgetExceeded] | None = None
        for party in failing:
            book = self._books[party]
            state = book.total
            pending: list[PrivacyEvent] = []
            indexed = [(i, e) for i, e in enumerate(events) if e.party == party]
            for n, (index, event) in enumerate(indexed):
                state = state.plus([event])
                pending.append(event)
                last = n == len(indexed) - 1
                if state.epsilon(book.budget.delta) > book.budget.epsilon or last:
                    if best is None or index < best[0]:
                        best = (index, self._exceeded(book, event, pending))
                    break
        assert best is not None
        return best[1]

    def __repr__(self) -> str:
        spent = ", ".join(f"{p}: ε={self.spent(p):.3g}/{b.budget.epsilon:g}" for p, b in self._books.items())
        return f"Ledger(accountant={self._accountant!r}, {spent})"
