"""The row rules' limits and stateless checks: what any row set a party accepts must satisfy in itself.

Apart from the bookkeeping that remembers row sets across setups and runs (`sampan.vertical.row_book`,
`sampan.vertical.rows`) because every protocol's setup applies these checks, with or without a book; the
overview of the rules, and what each role learns from them, is `sampan.vertical.rows`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from sampan.errors import PartyError

__all__ = ["DEFAULT_MAX_EVALUATIONS", "DEFAULT_MAX_TEST_FRACTION", "MIN_EVALUATION_PER_CLASS", "MIN_EVALUATION_ROWS",
           "RowRuleError", "check_positions", "check_splits", "fingerprint"]

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
        check_positions(party, what, rows, n, error)
    if np.intersect1d(train_rows, val_rows).size:
        raise error(f"party {party!r}: refusing validation rows that are also training rows")
    return train_rows, val_rows

def check_positions(party: str, what: str, rows: np.ndarray, n: int, error: type[Exception]) -> None:
    """`rows` are distinct positions of the `n` aligned rows (a repeated row would count one customer twice)."""
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
