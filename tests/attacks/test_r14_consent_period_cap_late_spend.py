"""R14-CONSENT-2: the period cap counts a job by the day it was RESERVED, so a reservation made before the
window and spent inside it escapes the cap: two jobs spend twice the period cap within one day.

Claim (owner_budget docstring, docs/deploy.md §5a): "at most `period_epsilon` reserved or spent in any
`period_days`". `_refuse_over` sums only jobs whose `reserved_at` is inside the window, and `admit` (the
charge) never checks the period for a job with a stated reservation. Job A reserves the whole cap on day 0 and
waits; on day 31 job B reserves the whole cap again (A is outside the window); on day 31 both spend it.
Fix: count each job's spend (history 'charge' events) by the time it was charged, plus open reservations,
and check the period at `admit` as well.
"""

from __future__ import annotations

from pathlib import Path

from sampan.privacy.owner_budget import BudgetRefused, DatasetBudget, OwnerBudgetBook

DAY = 86400.0


def test_no_period_window_holds_more_spending_than_the_cap(tmp_path: Path) -> None:
    now = [0.0]
    book = OwnerBudgetBook(tmp_path / "book.json", "bank_a",
                           {"loans": DatasetBudget(epsilon=10.0, period_days=30, period_epsilon=1.0)},
                           clock=lambda: now[0])
    book.reserve("job-a", "loans", 1.0, 0.0)  # day 0: the whole period cap, not spent yet
    now[0] = 31 * DAY
    spent_today = 0.0
    for job in ("job-b", "job-a"):
        try:
            if job == "job-b":
                book.reserve(job, "loans", 1.0, 0.0)
            book.admit(job, 1.0, 0.0)
            spent_today += 1.0
        except BudgetRefused:
            pass
    assert spent_today <= 1.0, f"epsilon {spent_today} spent on day 31 alone; the cap is 1.0 per 30 days"
