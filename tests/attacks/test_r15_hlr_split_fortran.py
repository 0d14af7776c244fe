"""R15-HLR-3 (fixed): `split_table(consume=True)` keeps the training rows of a column-major (Fortran-ordered) matrix.

Validation (issue 15 T6, "split without a second copy"): `split_table` is public (`sampan.horizontal.row_split`)
and its in-place path runs whenever the table owns a writeable matrix alone. `PartyData` is a mutable dataclass
whose matrix layout is fixed only at construction, so a caller that set ``table.X`` to a column-major matrix (e.g.
``np.asfortranarray``, what many column-oriented builders give) still gets the in-place path. Expected: the
training rows are those of `PartyData.train_test_split` (or the split copies, as for a shared matrix). What
happens: `_compact` moves the rows correctly by index, then ``X.resize((kept, width))`` (row_split.py:89) keeps the
first ``kept * width`` elements in memory order, which for a column-major matrix are column 0's values followed
by part of column 1: the training matrix silently holds other rows' and other columns' values, and the model
trains on them. Fixed: the in-place path runs only for a row-major (C-contiguous) matrix; any other layout is
split by copying, so the rows are exactly those of `PartyData.train_test_split`.
"""

from __future__ import annotations

import numpy as np

from sampan.data import PartyData
from sampan.horizontal.row_split import split_mask, split_table


def test_consumed_split_of_a_column_major_matrix_keeps_the_rows() -> None:
    rng = np.random.default_rng(0)
    n, d = 1000, 3
    X = rng.normal(size=(n, d))
    y = (rng.random(n) < 0.3).astype(np.int8)
    ids = np.array([f"c{i}" for i in range(n)], dtype=object)
    expected, _ = PartyData("bank", ids, X, y, ["a", "b", "c"]).train_test_split(0.25, np.random.default_rng(4))
    table = PartyData("bank", ids, X.copy(), y, ["a", "b", "c"])
    table.X = np.asfortranarray(table.X)  # column-major, owned by the table alone
    train, _ = split_table(table, split_mask(table, 0.25, np.random.default_rng(4)), consume=True)
    assert train.X.tobytes() == expected.X.tobytes()
    assert np.array_equal(train.ids, expected.ids) and np.array_equal(train.y, expected.y)
