"""A party's train/test split without doubling its table: held-out rows copied out, training rows compacted in place.

Why: `PartyData.subset` copies, so splitting a table into train and test held the table and both halves at once,
twice the table at the split (a 10M-row, 30-feature float64 party: 4.8 GB before training starts). When the
caller hands the table over (``consume=True``: a simulation's freshly loaded table), `split_table` copies only
the held-out rows, moves the training rows forward inside the table's own matrix block by block (kept order),
and shrinks the matrix to them: the peak is the table plus its holdout. A table whose matrix may be shared
(not owned, or referenced elsewhere) or is not row-major (C-contiguous: shrinking keeps the leading elements in
memory order, which are leading rows only then; review R15-HLR-3) is split by copying, as before. The rows
chosen are exactly those of `PartyData.train_test_split` (`split_mask`, pinned by a test).

What each role learns: nothing; the split is local to the party.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from sampan.data import PartyData

__all__ = ["compact_rows", "split_mask", "split_table"]

_BLOCK = 1 << 16


def split_mask(table: PartyData, test_fraction: float, rng: np.random.Generator, stratify: bool = True) -> np.ndarray:
    """The held-out rows (boolean mask) that ``table.train_test_split(test_fraction, rng, stratify)`` holds out,
    drawing the same numbers from ``rng``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n = len(table)
    if n < 2:
        raise ValueError(f"party '{table.party}' has {n} rows; a split needs at least 2")
    if stratify and table.y is not None:
        groups = [np.flatnonzero(table.y == c) for c in np.unique(table.y)]
    else:
        groups = [np.arange(n)]
    test_parts = [rng.permutation(g)[: int(round(test_fraction * g.size))] for g in groups]
    test_idx = np.concatenate(test_parts)
    if test_idx.size == 0 or test_idx.size == n:
        perm = rng.permutation(n)  # tiny tables: at least one row on each side
        test_idx = perm[: min(max(1, int(round(test_fraction * n))), n - 1)]
    mask = np.zeros(n, dtype=bool)
    mask[test_idx] = True
    return mask


def compact_rows(X: np.ndarray, keep: np.ndarray) -> int:
    """Writes ``X[keep]`` over ``X``'s leading rows and returns their count (a block's rows are copied before
    they are overwritten: the write position never passes the read position)."""
    w = 0
    for start in range(0, len(keep), _BLOCK):
        stop = min(start + _BLOCK, len(keep))
        k = keep[start:stop]
        if w == start and k.all():
            w = stop
            continue
        rows = X[start:stop][k]
        X[w:w + len(rows)] = rows
        w += len(rows)
    return w


def split_table(table: PartyData, test: np.ndarray, *, consume: bool = False) -> tuple[PartyData, PartyData]:
    """(training rows, held-out rows) of ``table``, each in the table's order. With ``consume`` the table's matrix
    becomes the training matrix when the table owns a row-major one alone (then ``table`` is emptied: do not use
    it again)."""
    test = np.asarray(test, dtype=bool)
    if test.shape != (len(table),):
        raise ValueError(f"the held-out mask must have length {len(table)}, got {test.shape}")
    test_idx = np.flatnonzero(test)
    held = dataclasses.replace(table, ids=table.ids[test_idx], X=table.X[test_idx],
                               y=None if table.y is None else table.y[test_idx],
                               trees_X=None if table.trees_X is None else table.trees_X[test_idx])
    X = table.X
    # row-major only: `resize` keeps the first kept*width elements in memory order (a column-major matrix's would
    # be column 0 then part of column 1, R15-HLR-3); `PartyData` is mutable, so its layout is checked here
    in_place = (consume and table.trees_X is None and X.flags.owndata and X.flags.writeable
                and X.flags.c_contiguous)
    if in_place:
        table.X = np.empty((0, X.shape[1]), dtype=X.dtype)  # the table gives its matrix up
        in_place = sys.getrefcount(X) == 2  # this name and the call's argument: no view or other holder
        if not in_place:
            table.X = X
    if not in_place:
        return table.subset(~test), held
    keep = ~test
    kept = compact_rows(X, keep)
    try:
        X.resize((kept, *X.shape[1:]), refcheck=True)  # realloc: the tail's pages go back to the system
        train_X = X
    except ValueError:  # something still refers to it: keep the leading rows as a view
        train_X = X[:kept]
    del X
    train = dataclasses.replace(table, ids=table.ids[keep], X=train_X, y=None if table.y is None else table.y[keep],
                                trees_X=None)
    table.ids, table.y = table.ids[:0], None if table.y is None else table.y[:0]
    return train, held
