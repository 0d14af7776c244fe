"""R14-CONSENT-3: an open-ended DP job (DP without a stated epsilon) charges delta 0 to the lifetime book while
its run ledger converts its spend at delta 1e-5: the book's delta total is smaller than the truth.

Claim (owner_budget docstring): "Across jobs the book composes by basic composition (epsilons add, deltas
add): never smaller than the truth"; docs/deploy.md: `[data.<name>.budget] delta` is a lifetime total.
`JobReservation` gives an open-ended run a ledger with delta 1e-5 (its epsilon is computed at that delta),
then charges the book `delta = ... if self.entry.reserved_delta > 0 else 0.0`, and an open-ended entry
reserves 0. So any number of open-ended Gaussian jobs pass a lifetime delta of 1e-5, each really spending
(epsilon, 1e-5). Fix: charge the ledger's delta whenever the run made an approximate-DP release.
"""

from __future__ import annotations

from pathlib import Path

from sampan.deploy.run_budget import JobReservation
from sampan.privacy.ledger.events import PrivacyEvent
from sampan.privacy.owner_budget import DatasetBudget, OwnerBudgetBook


def test_an_open_ended_gaussian_release_charges_its_delta(tmp_path: Path) -> None:
    book = OwnerBudgetBook(tmp_path / "book.json", "bank_a", {"loans": DatasetBudget(epsilon=10.0, delta=1e-4)})
    book.reserve("open", "loans", 0.0, 0.0, open_ended=True)
    run = JobReservation(book, "open", "bank_a", accountant="rdp", state_dir=tmp_path)
    run.admit([PrivacyEvent(party="bank_a", level="DP1", mechanism="gaussian", noise_multiplier=5.0)])
    entry = book.entry("open")
    assert entry is not None and entry.spent_epsilon > 0
    assert entry.spent_delta > 0, (entry.spent_epsilon, entry.spent_delta, run.ledger.budget("bank_a"))
