"""R14-CONSENT-1: a job id reused for ANOTHER dataset of the same party gets the first dataset's reservation;
the second dataset's lifetime budget is never checked and never charged.

Claim (T1, owner_budget docstring, docs/deploy.md §5a): one lifetime budget per (party, dataset); a job's
planned (epsilon, delta) is reserved at approval and refused "when it exceeds the unreserved remainder" of
THAT dataset. `OwnerBudgetBook.reserve` is idempotent per job id only ("a second call returns the first
reservation, whatever it asks"), not per (job id, dataset), and `ConsentDesk.decide` never checks that the
entry it got back is for the dataset the spec reads. A coordinator that had job "job-1" approved on dataset
`loans` (budget 5) asks the same party to approve "job-1" on dataset `cards` (lifetime budget 0.1): the
party signs an approval reserving epsilon 1 of... `loans`, and every release the run then makes on `cards` is
charged to the `loans` entry. `cards` spends 1.0 against a lifetime total of 0.1 while its book says 0.
Fix: key book entries by (job id, dataset) or refuse a reserve whose job id is held for another dataset.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[0]))

from _consent_grant import consent_federation, request_consent  # noqa: E402

from sampan.deploy.consent import job_spec  # noqa: E402
from sampan.wire import Message  # noqa: E402

CONFIG: dict[str, Any] = {
    "run": {"name": "consent", "workflow": "horizontal", "rounds": 2, "seed": 3},
    "privacy": {"epsilon": 1.0, "delta": 1e-5, "dp2": {"noise_multiplier": 1.2}},
    "deploy": {"dataset": "loans", "submitted_by": "ops"},
}


def _with_cards(text: str) -> str:
    """party.toml with a budget of 5 on `loans` and a second dataset `cards` (the same table) with 0.1."""
    cards = text[text.index("[data.loans]"):].replace("data.loans", "data.cards")
    return text + "\n[data.loans.budget]\nepsilon = 5.0\n\n" + cards + "\n[data.cards.budget]\nepsilon = 0.1\n"


def test_a_job_id_reused_on_another_dataset_is_checked_against_that_dataset_s_budget(tmp_path: Path) -> None:
    with consent_federation(tmp_path, edit=_with_cards) as (_, agents, names):
        victim = names[0]
        desk = agents[victim].consent
        columns = desk.served_columns("loans")

        def ask(dataset: str) -> Message:
            datasets = {n: {"dataset": dataset if n == victim else "loans", "columns": columns} for n in names}
            spec = job_spec(CONFIG, parties=names, datasets=datasets, label_holder=None, operator="ops",
                            job_id="job-1")
            return request_consent(agents[victim], spec)

        assert ask("loans").kind == "consent.approval"  # epsilon 1 of loans' 5: fine
        on_cards = ask("cards")  # epsilon 1 of cards' lifetime 0.1: must be refused
        held = desk.book.status("cards")
        # refused: a job id is bound to one spec (R14-CONSENT2-4), and the book checks cards' own budget
        error = str(on_cards.meta.get("error"))
        assert on_cards.is_error and ("budget" in error or "job_id" in error), (
            on_cards.meta.get("approval", {}).get("reserved"), held)
        assert held["reserved_epsilon"] == 0
