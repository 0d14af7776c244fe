"""A party agent's vertical row books: one fixed partition of its customers per (dataset, label holder).

Why here and not in the agent: the book's identity rules (which file, which bank's shared test register) are
the review findings' fixes (R12-1/R12-3, R13-VSPLIT-4) and deserve one place.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sampan.deploy.config import PartyConfig

__all__ = ["vertical_row_book"]


def vertical_row_book(config: PartyConfig, cache: dict[str, Any], name: str, dataset: str, label_holder: str) -> Any:
    """One vertical row book per (dataset, label holder): its fixed train/validation/test customers and
    evaluation cap, shared by the agent's open runs and persisted in <state_dir>/vertical-rows/ (review
    R12-1/R12-3). Keyed by the label holder too, so a partner can serve several banks (each reads
    aggregates over its own labels only). At the bank all its datasets' books share one `BankTests`: the
    evaluation cap counts over all of them, and their test customers are the same or disjoint (R13-VSPLIT-4).
    `cache` is the agent's own dict (books and the bank's test register live there for the agent's life)."""
    from sampan.vertical.rows import BankTests, RowBook

    books = cache.setdefault("_row_books", {})
    key = (dataset, label_holder)
    if key not in books:
        digest = hashlib.sha256(f"{dataset}\0{label_holder}".encode()).hexdigest()[:16]
        folder = Path(config.party.state_dir) / "vertical-rows"
        cap = config.privacy.max_evaluations
        bank = None
        if label_holder == name:
            bank = cache.setdefault("_bank_tests", BankTests(name, path=folder / "bank-tests.json",
                                                             max_evaluations=cap))
        books[key] = RowBook(name, path=folder / f"{digest}.json", max_evaluations=cap, bank=bank, dataset=digest)
    return books[key]
