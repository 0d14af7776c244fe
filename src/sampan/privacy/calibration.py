"""Choose noise before a run so that the whole planned run fits each party's budget.

The plan is fixed before any data is touched (rounds, parties' row counts, sampling rates), so
calibrating on it is data-independent and leaks nothing; the ledger still checks every step, which
covers anything the plan did not foresee.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from sampan.privacy.ledger import AccountantKind, Budget, BudgetExceeded, Ledger, PrivacyEvent
from sampan.privacy.party_policy import DEFAULT_MIN_NOISE_MULTIPLIER


def fits(events: Sequence[PrivacyEvent], budgets: Mapping[str, Budget], accountant: AccountantKind = "rdp") -> bool:
    try:
        Ledger(budgets, accountant=accountant).check(events)
    except BudgetExceeded:
        return False
    return True


def calibrate_noise_multiplier(
    plan: Callable[[float], Sequence[PrivacyEvent]],
    budgets: Mapping[str, Budget],
    *,
    accountant: AccountantKind = "rdp",
    low: float = DEFAULT_MIN_NOISE_MULTIPLIER,  # parties refuse less by default (party_policy)
    high: float = 200.0,
    rel_tol: float = 0.01,
) -> float:
    """Smallest noise multiplier z (to within rel_tol, rounded up) whose planned events fit every budget."""
    if not fits(plan(high), budgets, accountant):
        raise ValueError(f"even noise multiplier {high} does not fit the budget: shorten the run or raise epsilon")
    if fits(plan(low), budgets, accountant):
        return low
    while high / low > 1 + rel_tol:
        mid = (low * high) ** 0.5  # geometric bisection: z spans orders of magnitude
        if fits(plan(mid), budgets, accountant):
            high = mid
        else:
            low = mid
    return high


def schedule_factor(schedule: Sequence[float] | None, round_number: int, total_rounds: int) -> float:
    """Noise factor of a round under a schedule of equal segments fixed before the run (1 if none).

    Because the schedule is public and data-independent, accounting each round at its own noise is
    exact; the ledger's check before every step is the privacy filter that stops the run if the
    composition would pass the budget anyway.
    """
    if not schedule or round_number < 1:
        return 1.0
    segment = min(len(schedule) - 1, (round_number - 1) * len(schedule) // max(total_rounds, 1))
    return float(schedule[segment])
