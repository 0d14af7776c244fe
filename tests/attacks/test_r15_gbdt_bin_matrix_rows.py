"""R15-GBDT-4 (fixed): on a cluster engine `bin_matrix` shipped the party's WHOLE float table for every call.

Validation (issue 15 items 2 and 4: a party's compute on an engine, memory bounded by a batch). `bin_matrix(X,
edges, rows=rows)` does `engine.put((X, rows))` on each call, and every caller passes the full table: vertical
GBDT setup twice (`_table()`: the full table plus the training rows, then plus the validation rows), and
`GBDTScoring` on EVERY scoring request (`bin_matrix(self._full_table(), ..., rows=rows[known])`, the bank and each
partner), where a request may carry one applicant. `RayEngine.put` is `ray.put`: the table is serialised into the
object store again each time (10M x 100 float32 = 4 GB per applicant scored), unlike the binned matrix, which
`_handle` puts once per matrix. Safe behaviour: what goes to the engine scales with the rows binned (gather the
requested rows first when they are few, or put the table once per table as `_handle` does for binned matrices).
What happened: binning 1 row of a 200,000 x 20 table put all 32 MB. Now a row set of at most one block is binned
in the party process (nothing put), and a larger one puts the table once per table (cached by identity, as the
binned matrix) and its row numbers once per call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sampan.compute import use_engine
from sampan.models.gbdt import quantile_bin_edges
from sampan.models.gbdt_hist import bin_matrix


class _PutBytes:
    """A cluster-like engine that counts the bytes of the arrays it is asked to put."""

    name = "recording"

    def __init__(self) -> None:
        self.bytes = 0

    def put(self, data: Any) -> Any:
        parts = data if isinstance(data, tuple) else (data,)
        self.bytes += sum(p.nbytes for p in parts if isinstance(p, np.ndarray))
        return data

    def map_blocks(self, fn: Callable[..., Any], data: Any, blocks: Sequence[tuple[int, int]], *args: Any) -> list[Any]:
        return [fn(data, s, e, *args) for s, e in blocks]

    def close(self) -> None:
        return None


def test_binning_one_scored_row_does_not_ship_the_whole_table() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200_000, 20))
    edges = [quantile_bin_edges(X[:5000, j], 32) for j in range(X.shape[1])]
    engine = _PutBytes()
    with use_engine(engine):
        one = bin_matrix(X, edges, missing=True, rows=np.array([12_345]))
    assert one.shape == (1, 20)
    assert engine.bytes < 1_000_000, f"{engine.bytes / 1e6:.0f} MB put on the engine to bin one row"


class _CopyingPutBytes(_PutBytes):
    """As a cluster engine: `put` hands out a new object (a handle), so a cached handle is reused."""

    def put(self, data: Any) -> Any:
        super().put(data)
        return data.copy() if isinstance(data, np.ndarray) else data


def test_binning_large_row_sets_puts_the_table_once_and_each_call_its_rows() -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((150_000, 20))
    edges = [quantile_bin_edges(X[:5000, j], 32) for j in range(X.shape[1])]
    first, second = rng.permutation(len(X))[:100_000], rng.permutation(len(X))[:80_000]
    engine = _CopyingPutBytes()
    with use_engine(engine):
        a = bin_matrix(X, edges, missing=True, rows=first)
        b = bin_matrix(X, edges, missing=True, rows=second)
    np.testing.assert_array_equal(a, bin_matrix(X, edges, missing=True, rows=first))
    np.testing.assert_array_equal(b, bin_matrix(X, edges, missing=True)[second])
    assert engine.bytes == X.nbytes + first.nbytes + second.nbytes, f"{engine.bytes / 1e6:.0f} MB put"
