"""R15-HLR-5 (fixed): a horizontal party's `impute_stats` ranges no longer hold a float64 copy of every asked column.

Validation (issue 15 items 1-2: a party's table "held once in a compact form", its passes in memory proportional
to a batch): in an exact run whose schema imputes columns by median without declared bounds, the coordinator asks
each bank for the columns' ranges (`impute_stats` with ``ranges``), answered by
`sampan.horizontal.imputation.impute_statistics`. Expected: the min/max of each column computed one column (or
block) at a time: the peak grows by a few bytes per row whatever the number of columns. What happens: line 58
builds ``present = [_present(data, c.index) for c in cols]``, every asked column's present cells as float64
arrays all alive together (T6 made `_present` cast a float32 column to float64), so the peak grows by a float64
copy of all those columns: 8 bytes x columns per row (2x the matrix of a float32 table), ~2.4 GB for a 10M-row
bank with 30 such columns. Fixed: each column's min and max are NaN-skipping reductions over the column in place
(`imputation._range`), one column at a time, with the same figures as before.
"""

from __future__ import annotations

import tracemalloc

import numpy as np

from sampan.data import PartyData, TableSchema
from sampan.data.missing import missing_columns
from sampan.horizontal.party import HorizontalParty
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.wire import Message

D = 10
SCHEMA = TableSchema(id="id", label="y", features=[{"name": f"f{j}", "impute": "median"} for j in range(D)])


def _peak(n: int) -> int:
    rng = np.random.default_rng(0)
    X = rng.normal(50.0, 10.0, size=(n, D)).astype(np.float32)
    X[rng.random(X.shape) < 0.02] = np.nan
    data = PartyData("bank_a", np.array([f"r{i}" for i in range(n)], dtype=object), X,
                     (rng.random(n) < 0.3).astype(np.int8), SCHEMA.feature_names(), missing_columns(SCHEMA))
    bank = HorizontalParty("bank_a", data, data.subset(np.arange(0)), PartyPrivacyPolicy())
    meta = {"ranges": [{"index": j, "name": f"f{j}"} for j in range(D)]}
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        reply = bank.handlers()["impute_stats"](Message("run-1", 0, "coordinator", "bank_a", "impute_stats",
                                                        meta=meta))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert not reply.is_error and reply.arrays["low"].shape == (D,)
    present = [X[:, j][~np.isnan(X[:, j])].astype(np.float64) for j in range(D)]  # the figures the copies gave
    assert reply.arrays["low"].tobytes() == np.array([x.min() for x in present]).tobytes()
    assert reply.arrays["high"].tobytes() == np.array([x.max() for x in present]).tobytes()
    return peak


def test_ranges_memory_does_not_grow_with_the_number_of_columns() -> None:
    small, large = _peak(100_000), _peak(200_000)
    per_row = (large - small) / 100_000
    assert per_row < 4 * D, f"ranges' peak grows by {per_row:.1f} bytes per row ({D} float32 columns: {4 * D})"


def test_ranges_of_an_empty_or_all_missing_column_are_nan() -> None:
    X = np.array([[np.nan, 1.0], [np.nan, -2.0]], dtype=np.float32)
    data = PartyData("bank_a", np.array(["a", "b"], dtype=object), X, np.array([0, 1], dtype=np.int8),
                     ["f0", "f1"], missing_columns(TableSchema(id="id", label="y", features=[
                         {"name": "f0", "impute": "median"}, {"name": "f1", "impute": "median"}])))
    bank = HorizontalParty("bank_a", data, data.subset(np.arange(0)), PartyPrivacyPolicy())
    meta = {"ranges": [{"index": 0, "name": "f0"}, {"index": 1, "name": "f1"}]}
    reply = bank.handlers()["impute_stats"](Message("run-1", 0, "coordinator", "bank_a", "impute_stats", meta=meta))
    assert not reply.is_error
    assert np.isnan(reply.arrays["low"][0]) and np.isnan(reply.arrays["high"][0])
    assert reply.arrays["low"][1] == -2.0 and reply.arrays["high"][1] == 1.0
