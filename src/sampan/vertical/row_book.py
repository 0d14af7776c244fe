"""One party's fixed partition of one dataset into training, validation and test customers (`RowBook`).

Apart from the per-run bookkeeping (`sampan.vertical.rows.RunRows`) because it outlives runs: shared by every
run of a party on the dataset and, in a deployed agent, persisted in its state dir. It pins the training and
validation customers, admits held-out evaluations (the test customers, each model once, the cap) and records
the first answer of a repeatable model. The overview of the row rules is `sampan.vertical.rows`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sampan.vertical.bank_tests import BankTests
from sampan.vertical.row_rules import (
    DEFAULT_MAX_EVALUATIONS,
    MIN_EVALUATION_PER_CLASS,
    MIN_EVALUATION_ROWS,
    RowRuleError,
)

__all__ = ["RowBook"]

log = logging.getLogger("sampan.vertical.rows")  # the bank's local log, under the row rules' name as before the split


class RowBook:
    """One party's partition of one dataset into training, validation and test customers, across runs.

    Customers are named by this party's own row ids (each run maps its aligned positions to them), so a
    new run or a new alignment cannot re-fix a set. With `path` the book is persisted (JSON, this party's
    private state dir, written before the rows are used), so a restarted agent keeps it; an agent shares
    one book per dataset among its open runs.
    """

    def __init__(self, party: str, *, path: str | Path | None = None,
                 max_evaluations: int = DEFAULT_MAX_EVALUATIONS, bank: BankTests | None = None,
                 dataset: str = "") -> None:
        self.party, self.max_evaluations = party, int(max_evaluations)
        self.lock = threading.RLock()
        self._path = Path(path) if path is not None else None
        self.bank, self.dataset = bank, dataset or (self._path.stem if self._path is not None else "")
        state: dict[str, Any] = {}
        if self._path is not None and self._path.exists():
            state = json.loads(self._path.read_text())
        self._train: set[str] | None = set(state["train"]) if state.get("train") is not None else None
        self._val: set[str] | None = set(state["val"]) if state.get("val") is not None else None
        self._test: set[str] | None = set(state["test"]) if state.get("test") is not None else None
        self._fit: set[str] = set(state.get("fit") or [])
        self._test_ok = bool(state.get("test_ok", False))
        self._evaluated: list[str] = list(state.get("evaluated") or [])
        self._answers: dict[str, dict[str, Any]] = dict(state.get("answers") or {})  # repeatable models' first answer

    def _save(self) -> None:
        if self._path is None:
            return
        from sampan.files import atomic_write_bytes, private_directory

        private_directory(self._path.parent)
        state = {"train": sorted(self._train) if self._train is not None else None,
                 "val": sorted(self._val) if self._val is not None else None,
                 "test": sorted(self._test) if self._test is not None else None, "fit": sorted(self._fit),
                 "test_ok": self._test_ok, "evaluated": self._evaluated, "answers": self._answers}
        atomic_write_bytes(self._path, json.dumps(state).encode(), mode=0o600)

    def answer(self, model: str) -> dict[str, Any] | None:
        """The first answer given for a repeatable model, replayed verbatim (review R13-VBASE-1/2)."""
        return self._answers.get(model)

    def record_answer(self, model: str, answer: dict[str, Any]) -> None:
        self._answers[model] = dict(answer)
        self._save()

    @property
    def test_customers(self) -> list[str]:
        """The dataset's fixed test customers (this party's ids; empty until the first evaluation)."""
        return sorted(self._test or ())

    def pin(self, protocol: str, what: str, ids: set[str]) -> None:
        """The first `what` ("train"/"val") set fixes it for good; any other is refused."""
        current = self._train if what == "train" else self._val
        if current is None:
            if self._test is not None and ids & self._test:
                raise RowRuleError(f"party {self.party!r}: refusing {protocol}: its {what} rows include test rows")
            if what == "train":
                self._train = ids
            else:
                self._val = ids
            self._fit |= ids
            self._save()
        elif ids != current:
            label = "training" if what == "train" else "validation"
            raise RowRuleError(f"party {self.party!r}: refusing {protocol} with other {label} rows than those fixed "
                               f"for this dataset by its first setup (aggregates over two {label} sets differing by "
                               "one customer would give that customer's label)")

    def note_fit(self, ids: set[str]) -> None:
        if self._test is not None and ids & self._test:
            raise RowRuleError(f"party {self.party!r}: refusing training or validation rows that are test rows")
        if not ids <= self._fit:
            self._fit |= ids
            self._save()

    def admit_evaluation(self, model: str, rows: np.ndarray, ids: set[str],
                         labels: Callable[[], np.ndarray | None], expected: set[str] | None = None,
                         repeatable: bool = False) -> None:
        """`expected`: the test customers the bank computed for this run (`vertical.splits`); the first evaluation
        must name exactly those, never rows the coordinator picked (review R13-VSPLIT-1). `repeatable`: `model`
        is the bank's local baseline (weights and scaler): asked again, its FIRST answer is replayed verbatim (a
        seeded re-run reproduces the model; nothing new leaves), never recomputed (rows in another order or a
        refilled table would change the numbers: review R13-VBASE-1/2), and it is not counted twice."""
        if self._test is None:
            if expected is None or ids != expected:
                raise RowRuleError(f"party {self.party!r}: refusing held-out evaluation of other rows than the test "
                                   "customers this bank computed for the run (its test_ids file or its keyed split, "
                                   "announced in vertical.splits)")
            if len(rows) < MIN_EVALUATION_ROWS:
                raise RowRuleError(f"party {self.party!r}: refusing held-out evaluation of {len(rows)} rows; it needs "
                                   f"at least {MIN_EVALUATION_ROWS} distinct test rows ({MIN_EVALUATION_PER_CLASS} of "
                                   "each class)")
            if ids & self._fit:
                raise RowRuleError(f"party {self.party!r}: refusing held-out evaluation of training or validation "
                                   "rows")
            if self.bank is not None:  # the same or disjoint test customers across the bank's datasets
                self.bank.fix(self.dataset, ids)
            self._test = ids  # fixed now, whatever the labels say: one bit per dataset at most
            y = labels()
            self._test_ok = False
            if y is not None:
                counts = np.bincount(np.asarray(y)[np.asarray(rows, dtype=np.int64)].astype(np.int64), minlength=2)
                self._test_ok = len(counts) == 2 and int(counts.min()) >= MIN_EVALUATION_PER_CLASS
                if not self._test_ok:
                    log.warning("party %s: test rows hold %s rows per class (local log only)", self.party,
                                counts.tolist())
            self._save()
        elif ids != self._test:
            raise RowRuleError(f"party {self.party!r}: refusing held-out evaluation of other rows than the test rows "
                               "fixed by this dataset's first evaluation")
        if not self._test_ok:
            raise RowRuleError(f"party {self.party!r}: refusing held-out evaluation: the fixed test rows do not "
                               f"hold {MIN_EVALUATION_PER_CLASS} rows of each class (or have no labels here)")
        if model in self._evaluated:
            if repeatable and model in self._answers:
                return
            raise RowRuleError(f"party {self.party!r}: refusing a second held-out evaluation of the same model")
        if len(self._evaluated) >= self.max_evaluations:
            raise RowRuleError(f"party {self.party!r}: refusing held-out evaluation: its cap of {self.max_evaluations} "
                               "evaluated models on the fixed test rows is reached")
        if self.bank is not None:
            self.bank.count()
        self._evaluated.append(model)
        self._save()
