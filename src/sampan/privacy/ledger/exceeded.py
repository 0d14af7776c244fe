"""Why the ledger refused: BudgetExceeded (which party, level and step, and by how much) and UnknownPartyError.

Why apart: these messages are what an operator reads when a run stops; their formatting rules (enough
decimals that the '>' is visible) are kept next to the errors, away from the accounting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sampan.errors import BudgetError
from sampan.privacy.ledger.events import Budget, Level


class UnknownPartyError(KeyError):
    """An event or query names a party that has no budget in this ledger."""

    def __init__(self, party: str, known: Sequence[str]) -> None:
        super().__init__(party)
        self.party = party
        self.known = tuple(known)

    def __str__(self) -> str:
        return f"party {self.party!r} has no privacy budget in this ledger (budgets: {list(self.known)})"


def _fmt_eps_pair(value: float, limit: float) -> tuple[str, str]:
    """Format would-spend and budget with enough decimals that the '>' between them is visible."""
    for digits in range(2, 8):
        a, b = f"{value:.{digits}f}", f"{limit:.{digits}f}"
        if a != b:
            return a, b
    return f"{value!r}", f"{limit!r}"


def _fmt_delta(delta: float) -> str:
    text = f"{delta:g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


class BudgetExceeded(BudgetError, RuntimeError):
    """The next event would take a party past its budget; nothing was recorded and the run must stop."""

    def __init__(
        self,
        party: str,
        level: Level,
        would_spend: float,
        budget: Budget,
        *,
        spent: float,
        by_level: Mapping[str, float],
        step: int | None = None,
        note: str = "",
    ) -> None:
        self.party = party
        self.level = level
        self.would_spend = would_spend
        self.budget = budget
        self.spent = spent
        self.by_level = dict(by_level)
        self.step = step
        self.note = note
        would, limit = _fmt_eps_pair(would_spend, budget.epsilon)
        parts = " + ".join(f"{lvl} {eps:.2f}" for lvl, eps in self.by_level.items())
        where = f"level {level} step {step}" if step is not None else f"the next level {level} event"
        what = f" ({note})" if note else ""
        super().__init__(
            f"party {party!r} would spend ε={would} ({parts}) > budget ε={limit} at δ={_fmt_delta(budget.delta)}"
            f" if {where}{what} ran; the run stops here"
        )
