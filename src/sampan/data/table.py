"""A party's table: the validated arrays a learner uses, and the error for bad data.

Its declared schema is `sampan.data.schema.TableSchema` (re-exported here: the one schema class).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from sampan.compute import BLOCK_ROWS, row_blocks
from sampan.data.missing import MissingColumn
from sampan.data.schema import ColumnKind, ColumnSpec, TableSchema
from sampan.errors import DataError

__all__ = ["ColumnKind", "ColumnSpec", "TableSchema", "PartyData", "DataValidationError"]


class DataValidationError(DataError):
    """Names the party, the file, the column and how many rows are affected.

    The message is prefixed with ``party '<p>'`` and, when known, ``file '<path>'`` so that an operator
    reading a coordinator log can tell which data owner has to fix what.
    """

    def __init__(
        self,
        message: str,
        *,
        party: str,
        column: str | None = None,
        rows: int | None = None,
        path: str | None = None,
    ) -> None:
        self.detail = message
        self.party = party
        self.column = column
        self.rows = rows
        self.path = None if path is None else str(path)
        where = f"party '{party}'"
        if message.startswith(where):  # already a full sentence about the party
            super().__init__(message)
            return
        if self.path is not None:
            where += f", file '{self.path}'"
        super().__init__(f"{where}: {message}")


@dataclass
class PartyData:
    """One party's validated table, ready for a learner. Lives only inside that party."""

    party: str
    ids: np.ndarray
    X: np.ndarray
    y: np.ndarray | None
    feature_names: list[str] = field(default_factory=list)
    # encoded columns that may hold NaN until imputed (from the schema: public), and the values a local
    # imputation filled them with (vertical parties; `sampan.data.missing.impute_locally`)
    missing_columns: tuple[MissingColumn, ...] = ()
    fill_values: np.ndarray | None = None
    # what tree models see when it differs from X: NaN kept in `native` columns (X has them filled for linear models)
    trees_X: np.ndarray | None = None

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids)
        self.ids = ids if ids.dtype == object else ids.astype(str).astype(object)
        # float32 is the compact form a loader may choose (`load_table(..., dtype=np.float32)`); anything else
        # becomes float64, the default every learner was written for
        X = np.asarray(self.X)
        self.X = np.ascontiguousarray(X, dtype=np.float32 if X.dtype == np.float32 else np.float64)
        if self.ids.ndim != 1:
            raise ValueError("ids must be 1-D")
        if self.X.ndim != 2 or self.X.shape[0] != self.ids.shape[0]:
            raise ValueError(f"X must be 2-D with one row per id; got X {self.X.shape}, ids {self.ids.shape}")
        if len(self.feature_names) != self.X.shape[1]:
            raise ValueError(f"{len(self.feature_names)} feature names for {self.X.shape[1]} columns")
        self.feature_names = list(self.feature_names)
        if self.trees_X is not None and self.trees_X.shape != self.X.shape:
            raise ValueError(f"trees_X must have X's shape {self.X.shape}; got {self.trees_X.shape}")
        if self.y is not None:
            self.y = np.asarray(self.y, dtype=np.int8)
            if self.y.shape != self.ids.shape:
                raise ValueError(f"y must have one entry per id; got {self.y.shape}")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def batches(self, rows: int = BLOCK_ROWS) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(start, stop, X[start:stop] as float64)`` over fixed row blocks (`sampan.compute.row_blocks`):
        a learner works in float64 on one block at a time while the table stays in its compact dtype."""
        for start, stop in row_blocks(len(self), rows):
            yield start, stop, np.asarray(self.X[start:stop], dtype=np.float64)

    def subset(self, idx: np.ndarray) -> PartyData:
        """Rows selected by integer indices or a boolean mask, as a new PartyData (copies)."""
        sel = np.asarray(idx)
        if sel.dtype == bool:
            if sel.shape != (len(self),):
                raise ValueError(f"boolean mask must have length {len(self)}, got {sel.shape}")
            sel = np.flatnonzero(sel)
        elif sel.size == 0:
            sel = sel.astype(np.intp)
        elif sel.dtype.kind not in "iu":
            raise ValueError("subset takes integer indices or a boolean mask")
        return PartyData(
            party=self.party,
            ids=self.ids[sel],
            X=self.X[sel],
            y=None if self.y is None else self.y[sel],
            feature_names=list(self.feature_names),
            missing_columns=self.missing_columns,
            fill_values=self.fill_values,
            trees_X=None if self.trees_X is None else self.trees_X[sel],
        )

    def train_test_split(
        self, test_fraction: float, rng: np.random.Generator, stratify: bool = True
    ) -> tuple[PartyData, PartyData]:
        """Random split kept inside the party; stratified by label so both halves see each class.

        Each half keeps the table's row order. Stratification is skipped when the party has no label.
        """
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        n = len(self)
        if n < 2:
            raise ValueError(f"party '{self.party}' has {n} rows; a split needs at least 2")
        if stratify and self.y is not None:
            groups = [np.flatnonzero(self.y == c) for c in np.unique(self.y)]
        else:
            groups = [np.arange(n)]
        test_parts: list[np.ndarray] = []
        for g in groups:
            k = int(round(test_fraction * g.size))
            test_parts.append(rng.permutation(g)[:k])
        test_idx = np.concatenate(test_parts)
        if test_idx.size == 0 or test_idx.size == n:
            # Tiny tables: force at least one row on each side.
            perm = rng.permutation(n)
            test_idx = perm[: min(max(1, int(round(test_fraction * n))), n - 1)]
        mask = np.zeros(n, dtype=bool)
        mask[test_idx] = True
        return self.subset(~mask), self.subset(mask)
