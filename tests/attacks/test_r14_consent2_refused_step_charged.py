"""R14-CONSENT2-7 (low): a step the book refuses (period cap, or an open-ended job past the remainder) is still
recorded in the run's ledger, so the NEXT admitted step charges the lifetime book for the refused release that
never left: the owner's lifetime budget is drained by refusals.

Claim (run_budget.py): "the step that would pass the reservation is refused, nothing released"; owner_budget.py:
charged "the running total the job's own ledger composed". `JobReservation.admit` records the events in its
ledger and persists it BEFORE `OwnerBudgetBook.admit` may refuse; it never takes them back.
Fixed: `JobReservation.admit` checks the book with the would-be total first and records the ledger only
after the book accepted; `ReservedPolicy._charge` checks the party's own [privacy] ledger before the book.
Suggested fix: check the book with the would-be total first (or roll the ledger back / persist only after the book
accepted), so a refused step leaves neither ledger nor book changed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sampan.deploy.run_budget import JobReservation
from sampan.privacy.ledger import PrivacyEvent
from sampan.privacy.owner_budget import DatasetBudget, OwnerBudgetBook
from sampan.privacy.party_policy import PolicyRefused


def test_a_refused_step_is_never_charged(tmp_path: Path) -> None:
    now = [1_000_000.0]
    book = OwnerBudgetBook(tmp_path / "book.json", "bank", {"loans": DatasetBudget(
        epsilon=10.0, delta=1e-3, period_days=30, period_epsilon=1.0)}, clock=lambda: now[0])
    book.reserve("job-1", "loans", 0.0, 0.0, open_ended=True)
    run = JobReservation(book, "job-1", "bank", accountant="rdp", state_dir=tmp_path)

    def laplace(eps: float) -> list[PrivacyEvent]:
        return [PrivacyEvent(party="bank", level="DP1", mechanism="laplace", epsilon=eps)]

    run.admit(laplace(0.8))
    with pytest.raises(PolicyRefused):  # 0.8 + 0.5 > the period cap of 1.0: refused, nothing released
        run.admit(laplace(0.5))
    now[0] += 31 * 86400.0  # a month later the window has room again
    run.admit(laplace(0.1))
    entry = book.entry("job-1")
    assert entry is not None
    assert entry.spent_epsilon <= 0.9 + 1e-9, (
        f"released 0.8 + 0.1, the book charged {entry.spent_epsilon:g} (the refused 0.5 included)")
