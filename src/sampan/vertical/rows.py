"""What a party accepts as training, validation and evaluation rows of a vertical run.

The coordinator chooses every row set (positions in the aligned order) and sees every aggregate the
protocols return, so each party checks the row sets itself instead of trusting them:

* training and validation rows (`check_splits`, every protocol's setup, at every party): 1-D positions
  of the aligned rows, no row repeated (a customer repeated m times moves every count by m, not 1, and
  defeats the noise calibrated to one customer), validation disjoint from training;
* one partition per dataset (`RowBook`, shared by all runs of a party and, in a deployed agent, persisted
  in its state dir): the first setup ever fixes the training customers (`bind_train`: WOE, GBDT, secure
  LR, the bank's baseline) and the first one with validation rows the validation customers
  (`bind_splits`: GBDT, secure LR, the bank's baseline); later setups, in this run or any later one, must
  name exactly those customers (by id, not position: a fresh alignment cannot re-fix them). Why: the
  coordinator sees exact aggregates over them (GBDT's per-tree training and validation log-loss, secure
  LR's validation Brier), and two runs on sets differing by one customer would difference its label
  (review R12-1/R12-3); the dealer would likewise see that customer's binned record. Within a run the
  training rows must also come in the same order (each setup's secret row order is fresh, so identical
  rows reveal nothing new);
* held-out evaluation (`RunRows.admit_evaluation`, at the label holder): the test customers are the
  bank's, never the coordinator's: the bank computes them itself when it answers `vertical.splits`
  (its `[vertical] test_ids` file, or a hash keyed with its own secret split key of the run seed and
  each id, at most `max_test_fraction` of the aligned customers) and the first evaluation must name
  exactly those (review R13-VSPLIT-1); it also needs at least `MIN_EVALUATION_ROWS` rows that are
  neither training nor validation rows (and later setups may not use them). That first evaluation fixes
  the test customers for the dataset; after that only exactly those customers are evaluated, each model
  once, and at most `max_evaluations` models. A deployed bank shares one `BankTests` over all its
  datasets: the cap counts over all of them, and a dataset's test customers may not overlap another
  dataset's evaluated test customers unless they are the same set (two evaluations over sets differing
  by one customer would difference its label, review R13-VSPLIT-4).
  Only then does the bank look at labels: fewer than `MIN_EVALUATION_PER_CLASS` rows of either class is
  refused with a generic message, and the test rows stay fixed (so the refusal is one bit about the
  whole set, asked once).

What each role learns from these checks: the coordinator learns whether its row sets were accepted, and
at most once per dataset whether the fixed test rows hold `MIN_EVALUATION_PER_CLASS` rows of each class;
errors that leave the bank carry no label information (details stay in the bank's local log).

Where each part lives (every name stays importable from here): the limits and stateless checks in
`sampan.vertical.row_rules`, the bank's keyed split in `sampan.vertical.keyed_split`, the cross-dataset test
customers and cap in `sampan.vertical.bank_tests`, the per-dataset partition in `sampan.vertical.row_book`;
this module keeps the per-run bookkeeping (`RunRows`, `per_run`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from sampan.vertical.bank_tests import BankTests
from sampan.vertical.keyed_split import _unit_hash as _unit_hash
from sampan.vertical.keyed_split import complete_split, in_seeded_order, seeded_split
from sampan.vertical.row_book import RowBook
from sampan.vertical.row_book import log as log
from sampan.vertical.row_rules import (
    DEFAULT_MAX_EVALUATIONS,
    DEFAULT_MAX_TEST_FRACTION,
    MIN_EVALUATION_PER_CLASS,
    MIN_EVALUATION_ROWS,
    RowRuleError,
    check_splits,
    fingerprint,
)
from sampan.vertical.row_rules import check_positions as _check_positions

__all__ = ["BankTests", "DEFAULT_MAX_EVALUATIONS", "DEFAULT_MAX_TEST_FRACTION", "MIN_EVALUATION_PER_CLASS",
           "MIN_EVALUATION_ROWS", "RowBook", "RowRuleError",
           "RunRows", "check_splits", "complete_split", "fingerprint", "in_seeded_order", "per_run",
           "seeded_split"]


class RunRows:
    """One party's row bookkeeping for one run, over the dataset's `RowBook` (see the module docstring)."""

    def __init__(self, party: str, book: RowBook | None = None,
                 ids_of: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.party = party
        self.book = book or RowBook(party)
        self._ids_of = ids_of or (lambda rows: rows)  # no ids: positions stand for customers
        self._train_digest: str | None = None   # the training rows (in order) whose binned records went to the dealer
        self.announced_test: set[str] | None = None  # the test customers the bank computed in vertical.splits

    def bind_train(self, protocol: str, train_rows: np.ndarray) -> None:
        digest = hashlib.sha256(np.ascontiguousarray(train_rows, dtype=np.int64).tobytes()).hexdigest()
        if self._train_digest is not None and digest != self._train_digest:
            raise RowRuleError(f"party {self.party!r}: refusing {protocol} with other training rows than an earlier "
                               "setup of this run (two row sets would show the dealer the binned records by which "
                               "they differ)")
        with self.book.lock:
            self.book.pin(protocol, "train", self._ids(train_rows))
        self._train_digest = digest

    def bind_splits(self, protocol: str, train_rows: np.ndarray, val_rows: np.ndarray, *, dealer: bool = True) -> None:
        """A protocol that reports aggregates over its training and validation rows: both pinned per dataset
        (`dealer`: it also gives the dealer binned training records, so their order is pinned for the run)."""
        if dealer:
            self.bind_train(protocol, train_rows)
        else:
            with self.book.lock:
                self.book.pin(protocol, "train", self._ids(train_rows))
        if len(val_rows):
            with self.book.lock:
                self.book.pin(protocol, "val", self._ids(val_rows))

    def note_fit(self, rows: np.ndarray) -> None:
        """Rows some protocol trains or validates on: never test rows."""
        with self.book.lock:
            self.book.note_fit(self._ids(np.asarray(rows, dtype=np.int64).ravel()))

    def admit_evaluation(self, model: str, rows: np.ndarray, n: int,
                         labels: Callable[[], np.ndarray | None], repeatable: bool = False) -> np.ndarray:
        """The label holder's check before it scores held-out rows for aggregate metrics."""
        rows = np.asarray(rows, dtype=np.int64)
        _check_positions(self.party, "evaluation", rows, n, RowRuleError)
        with self.book.lock:
            self.book.admit_evaluation(model, rows, self._ids(rows), labels, self.announced_test, repeatable)
        return rows

    def answer(self, model: str) -> dict[str, Any] | None:
        with self.book.lock:
            return self.book.answer(model)

    def record_answer(self, model: str, answer: dict[str, Any]) -> None:
        with self.book.lock:
            self.book.record_answer(model, answer)

    def announce_test(self, rows: np.ndarray) -> None:
        """The test customers the bank computed for this run (what a first evaluation must name)."""
        self.announced_test = self._ids(rows)

    def pinned_positions(self, n: int) -> dict[str, np.ndarray | None]:
        """Where the dataset's pinned training, validation and test customers sit in this run's aligned order
        (None: not pinned yet), so an honest coordinator can name them in a fresh alignment."""
        ids = np.array([str(i) for i in np.asarray(self._ids_of(np.arange(n, dtype=np.int64))).ravel()])
        out: dict[str, np.ndarray | None] = {}
        with self.book.lock:
            for what, pinned in (("train", self.book._train), ("val", self.book._val), ("test", self.book._test)):
                if pinned is None:
                    out[what] = None
                    continue
                positions = np.flatnonzero(np.isin(ids, sorted(pinned))).astype(np.int64)
                if len(positions) != len(pinned):
                    raise RowRuleError(f"party {self.party!r}: {len(pinned) - len(positions)} of this dataset's pinned "
                                       f"{what} customers are not in this run's alignment (the partition is fixed "
                                       "by the dataset's first run; another set would difference labels)")
                out[what] = positions
        return out

    def _ids(self, rows: np.ndarray) -> set[str]:
        return {str(i) for i in np.asarray(self._ids_of(np.asarray(rows, dtype=np.int64))).ravel()}


def per_run(party: str, book: RowBook | None = None,
            ids_of: Callable[[np.ndarray], np.ndarray] | None = None) -> Callable[[str], RunRows]:
    """`run_id -> RunRows` for one party, kept for the party's life (one object shared by its protocols), all
    over one `RowBook` (the dataset's fixed partition)."""
    runs: dict[str, RunRows] = {}
    book = book or RowBook(party)

    def get(run_id: str) -> RunRows:
        if run_id not in runs:
            runs[run_id] = RunRows(party, book, ids_of)
        return runs[run_id]

    return get
