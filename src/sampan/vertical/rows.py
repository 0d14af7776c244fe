"""What a party accepts as training, validation and evaluation rows of a vertical run.

The coordinator chooses every row set (positions in the aligned order) and sees every aggregate the
protocols return, so each party checks the row sets itself instead of trusting them:

* training and validation rows (`check_splits`, every protocol's setup, at every party): 1-D positions
  of the aligned rows, no row repeated (a customer repeated m times moves every count by m, not 1, and
  defeats the noise calibrated to one customer), validation disjoint from training;
* binned records for the dealer (`RunRows.bind_train`, WOE and GBDT setups): a party gives the dealer
  its binned training records once per run; a second setup in the run must name exactly the same
  training rows. Each setup's secret row order is fresh, so identical rows reveal nothing new, while
  two setups on row sets differing by one customer would show that customer's binned record as the
  difference of the two multisets;
* held-out evaluation (`RunRows.admit_evaluation`, at the label holder): the first evaluation request of
  the run fixes the test rows; it needs at least `MIN_EVALUATION_ROWS` distinct rows that are
  neither training nor validation rows of any setup so far (and later setups may not use them); after
  that only exactly those rows are evaluated, each model once. Only then does the bank look at labels:
  fewer than `MIN_EVALUATION_PER_CLASS` rows of either class is refused with a generic message, and the
  test rows stay fixed (so the refusal is one bit about the whole set, asked once per run).

What each role learns from these checks: the coordinator learns whether its row sets were accepted, and
at most once per run whether the fixed test rows hold `MIN_EVALUATION_PER_CLASS` rows of each class;
errors that leave the bank carry no label information (details stay in the bank's local log).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Callable

import numpy as np

__all__ = ["MIN_EVALUATION_PER_CLASS", "MIN_EVALUATION_ROWS", "RowRuleError", "RunRows", "check_splits", "fingerprint", "per_run"]

log = logging.getLogger(__name__)

MIN_EVALUATION_PER_CLASS = 1  # both classes present (defined metrics); the fixed test set stops differencing
MIN_EVALUATION_ROWS = 50       # distinct rows, checked before any label is looked at


class RowRuleError(ValueError):
    """A party refuses a row set the coordinator chose."""


def check_splits(party: str, train_rows: np.ndarray, val_rows: np.ndarray, n: int,
                 error: type[Exception] = RowRuleError) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation rows are distinct aligned rows, and the two sets do not overlap.

    Why: a repeated row multiplies one customer's weight in every sum (the noise is calibrated to one
    occurrence), and validation rows that are training rows let the coordinator steer the validation
    aggregate it sees onto rows whose gradient it also drives.
    """
    train_rows = np.asarray(train_rows, dtype=np.int64)
    val_rows = np.asarray(val_rows, dtype=np.int64)
    for what, rows in (("training", train_rows), ("validation", val_rows)):
        _check_positions(party, what, rows, n, error)
    if np.intersect1d(train_rows, val_rows).size:
        raise error(f"party {party!r}: refusing validation rows that are also training rows")
    return train_rows, val_rows


def _check_positions(party: str, what: str, rows: np.ndarray, n: int, error: type[Exception]) -> None:
    if rows.ndim != 1 or (len(rows) and (rows.min() < 0 or rows.max() >= n)):
        raise error(f"party {party!r}: the {what} rows are not positions of the {n} aligned rows")
    if len(np.unique(rows)) != len(rows):
        raise error(f"party {party!r}: refusing {what} rows that repeat a row")


def fingerprint(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    """A digest of a model part (its arrays and metadata): "the same model" for the once-per-model rule."""
    h = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode())
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


class RunRows:
    """One party's row bookkeeping for one run (see the module docstring for the rules)."""

    def __init__(self, party: str) -> None:
        self.party = party
        self._train_digest: str | None = None   # the training rows whose binned records went to the dealer
        self._fit = np.zeros(0, dtype=np.int64)  # every training and validation row of the run so far
        self._test: np.ndarray | None = None     # the test rows, fixed by the first evaluation request
        self._test_ok = False
        self._evaluated: set[str] = set()        # models evaluated on the test rows

    def bind_train(self, protocol: str, train_rows: np.ndarray) -> None:
        digest = hashlib.sha256(np.ascontiguousarray(train_rows, dtype=np.int64).tobytes()).hexdigest()
        if self._train_digest is not None and digest != self._train_digest:
            raise RowRuleError(f"party {self.party!r}: refusing {protocol} with other training rows than an earlier "
                               "setup of this run (two row sets would show the dealer the binned records by which "
                               "they differ)")
        self._train_digest = digest

    def note_fit(self, rows: np.ndarray) -> None:
        """Rows some protocol trains or validates on: never test rows."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        if self._test is not None and np.intersect1d(rows, self._test).size:
            raise RowRuleError(f"party {self.party!r}: refusing training or validation rows that are test rows of "
                               "this run")
        self._fit = np.union1d(self._fit, rows)

    def admit_evaluation(self, model: str, rows: np.ndarray, n: int,
                         labels: Callable[[], np.ndarray | None]) -> np.ndarray:
        """The label holder's check before it scores held-out rows for aggregate metrics."""
        rows = np.asarray(rows, dtype=np.int64)
        _check_positions(self.party, "evaluation", rows, n, RowRuleError)
        if self._test is None:
            if len(rows) < MIN_EVALUATION_ROWS:
                raise RowRuleError(f"party {self.party!r}: refusing held-out evaluation of {len(rows)} rows; it needs "
                                   f"at least {MIN_EVALUATION_ROWS} distinct test rows ({MIN_EVALUATION_PER_CLASS} of "
                                   "each class)")
            if np.intersect1d(rows, self._fit).size:
                raise RowRuleError(f"party {self.party!r}: refusing held-out evaluation of training or validation "
                                   "rows")
            self._test = np.sort(rows)  # fixed now, whatever the labels say: one bit per run at most
            y = labels()
            if y is not None:
                counts = np.bincount(np.asarray(y)[rows].astype(np.int64), minlength=2)
                self._test_ok = len(counts) == 2 and int(counts.min()) >= MIN_EVALUATION_PER_CLASS
                if not self._test_ok:
                    log.warning("party %s: test rows hold %s rows per class (local log only)", self.party,
                                counts.tolist())
        elif not np.array_equal(np.sort(rows), self._test):
            raise RowRuleError(f"party {self.party!r}: refusing held-out evaluation of other rows than the test rows "
                               "fixed by this run's first evaluation")
        if not self._test_ok:
            raise RowRuleError(f"party {self.party!r}: refusing held-out evaluation: the test rows of this run do not "
                               f"hold {MIN_EVALUATION_PER_CLASS} rows of each class (or have no labels here)")
        if model in self._evaluated:
            raise RowRuleError(f"party {self.party!r}: refusing a second held-out evaluation of the same model")
        self._evaluated.add(model)
        return rows


def per_run(party: str) -> Callable[[str], RunRows]:
    """`run_id -> RunRows` for one party, kept for the party's life (one object shared by its protocols)."""
    runs: dict[str, RunRows] = {}

    def get(run_id: str) -> RunRows:
        if run_id not in runs:
            runs[run_id] = RunRows(party)
        return runs[run_id]

    return get
