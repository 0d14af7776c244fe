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
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sampan.errors import PartyError

__all__ = ["BankTests", "DEFAULT_MAX_EVALUATIONS", "DEFAULT_MAX_TEST_FRACTION", "MIN_EVALUATION_PER_CLASS",
           "MIN_EVALUATION_ROWS", "RowBook", "RowRuleError",
           "RunRows", "check_splits", "complete_split", "fingerprint", "in_seeded_order", "per_run",
           "seeded_split"]

log = logging.getLogger(__name__)

MIN_EVALUATION_PER_CLASS = 1  # both classes present (defined metrics); the fixed test set stops differencing
MIN_EVALUATION_ROWS = 50       # distinct rows, checked before any label is looked at
DEFAULT_MAX_EVALUATIONS = 20   # models evaluated on the fixed test rows over all runs (as horizontal's cap)
DEFAULT_MAX_TEST_FRACTION = 0.3  # largest test share a coordinator may ask of the aligned customers


class RowRuleError(PartyError, ValueError):
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


def _unit_hash(label: str, seed: int, ids: np.ndarray, key: bytes | None = None) -> np.ndarray:
    """A uniform number in [0, 1) per id, from (label, seed, id), keyed with the bank's secret split `key`
    (HMAC-SHA256): without the key no one can predict or grind a seed for it (review R13-VSPLIT-2); the
    same key, seed and id give the same number. `key=None`: the public hash (tests of the rule only)."""
    out = np.empty(len(ids), dtype=np.float64)
    for i, customer in enumerate(ids):
        text = f"sampan/split/{label}/{int(seed)}/{customer}".encode()
        digest = hmac.new(key, text, hashlib.sha256).digest() if key is not None else hashlib.sha256(text).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    return out


def seeded_split(ids: np.ndarray, seed: int, *, test_fraction: float, val_fraction: float,
                 test_ids: set[str] | None = None, key: bytes | None = None) -> dict[str, np.ndarray]:
    """Training, validation and test positions of aligned `ids`, from the run seed and each customer's id only.

    Why: the aligned order is a fresh secret permutation every run, so positions drawn from the seed named
    other customers each time (same files and seed, AUC 0.829 then 0.772). A customer's set now depends only on
    hash(key, seed, id), keyed with the bank's secret split key: the same bank, files and seed give the same test
    customers; only the bank computes it (it tells the others positions, never the key).
    `test_ids` (the bank's explicit test file) fixes the test set; the rest is split into validation and training
    by the same rule. Sizes are exact (round(n x fraction)): customers are ranked by their hash, so adding one
    moves at most one other across each boundary.
    """
    ids = np.asarray([str(i) for i in np.asarray(ids).ravel()])
    n = len(ids)
    test, val = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    if test_ids is not None:
        test = np.isin(ids, sorted(test_ids))
        rest = np.flatnonzero(~test)
        share = val_fraction / max(1.0 - test_fraction, 1e-12)
        ranked = rest[np.argsort(_unit_hash("val", seed, ids[rest], key), kind="stable")]
        val[ranked[:int(round(len(rest) * share))]] = True
    else:  # exact sizes, as before: the customers ranked by their hash, the first test_fraction held out
        order = np.argsort(_unit_hash("holdout", seed, ids, key), kind="stable")
        n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
        test[order[:n_test]], val[order[n_test:n_test + n_val]] = True, True
    train = ~(test | val)
    return {k: in_seeded_order(np.flatnonzero(m).astype(np.int64), ids, seed, key)
            for k, m in (("train", train), ("val", val), ("test", test))}


def complete_split(pinned: dict[str, np.ndarray], ids: np.ndarray, seed: int, *, test_fraction: float,
                   val_fraction: float, test_ids: set[str] | None = None, key: bytes | None = None
                   ) -> dict[str, np.ndarray]:
    """The dataset's pinned sets where it has them, the rest by `seeded_split`; every set in seeded order."""
    drawn = seeded_split(ids, seed, test_fraction=test_fraction, val_fraction=val_fraction, test_ids=test_ids,
                         key=key)
    taken = np.concatenate([np.zeros(0, dtype=np.int64), *pinned.values()])
    return {k: in_seeded_order(pinned[k] if k in pinned else drawn[k][~np.isin(drawn[k], taken)], ids, seed, key)
            for k in drawn}


def in_seeded_order(positions: np.ndarray, ids: np.ndarray, seed: int, key: bytes | None = None) -> np.ndarray:
    """`positions` ordered by hash(key, seed, id) of their customers, not by place in the aligned order (a fresh
    secret permutation per run): minibatches drawn by index then hold the same customers in every run."""
    positions = np.asarray(positions, dtype=np.int64)
    keys = _unit_hash("order", seed, np.asarray([str(i) for i in np.asarray(ids).ravel()])[positions], key)
    return positions[np.argsort(keys, kind="stable")]


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


class BankTests:
    """A bank's evaluated test customers over ALL its datasets, and its evaluation cap over them (review
    R13-VSPLIT-4: one row book per dataset gave each dataset of the same customers its own "first" evaluation).

    A dataset's first evaluation is admitted only if its test customers are the same as, or disjoint from, every
    other dataset's evaluated test customers: two held-out aggregates over sets that differ by a few customers
    would difference their labels. With `path` it is persisted (JSON, the bank's private state dir, 0600)."""

    def __init__(self, party: str, *, path: str | Path | None = None,
                 max_evaluations: int = DEFAULT_MAX_EVALUATIONS) -> None:
        self.party, self.max_evaluations = party, int(max_evaluations)
        self.lock = threading.RLock()
        self._path = Path(path) if path is not None else None
        state = json.loads(self._path.read_text()) if self._path is not None and self._path.exists() else {}
        self._tests: dict[str, set[str]] = {k: set(v) for k, v in dict(state.get("tests") or {}).items()}
        self._evaluated = int(state.get("evaluated", 0))

    def _save(self) -> None:
        if self._path is not None:
            from sampan.files import atomic_write_bytes, private_directory

            private_directory(self._path.parent)
            state = {"tests": {k: sorted(v) for k, v in self._tests.items()}, "evaluated": self._evaluated}
            atomic_write_bytes(self._path, json.dumps(state).encode(), mode=0o600)

    def fix(self, dataset: str, ids: set[str]) -> None:
        """Record `dataset`'s test customers, refusing a partial overlap with another dataset's."""
        with self.lock:
            for other, earlier in self._tests.items():
                if other != dataset and earlier & ids and earlier != ids:
                    raise RowRuleError(f"party {self.party!r}: refusing held-out evaluation: its test customers "
                                       f"overlap, but differ by {len(earlier ^ ids)} customers from, those already "
                                       "evaluated in another of this bank's datasets (two evaluations over sets "
                                       "differing by a few customers give their labels)")
            self._tests[dataset] = set(ids)
            self._save()

    def count(self) -> None:
        """One more evaluated model, over all the bank's datasets; refused once `max_evaluations` is reached."""
        with self.lock:
            if self._evaluated >= self.max_evaluations:
                raise RowRuleError(f"party {self.party!r}: refusing held-out evaluation: its cap of "
                                   f"{self.max_evaluations} evaluated models over all its runs and datasets is reached")
            self._evaluated += 1
            self._save()


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
