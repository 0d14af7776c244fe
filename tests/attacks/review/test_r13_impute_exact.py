"""Review (issue 13) of exact imputation statistics (no DP) through a bank's public `impute_stats` handler, as a
curious coordinator.

R13-IMP-3: without DP the receipt lists "a histogram over public bins (median)" per imputed column, but the bank
answers ANY number of `impute_stats` requests in a run, each over bounds and bins the coordinator picks (it ignores
the bounds its own [schema] declares for the column, and the run's MEDIAN_BINS). Zooming windows of 1024 bins
read every present value of every imputed column to any precision: the column's whole multiset, not a median
sketch. Under DP the same bank answers one request per run; without DP nothing bounds it.
(horizontal/imputation.py `impute_statistics`; privacy/imputation.py `imputation_mod`, the branch without dp.)
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.data import PartyData, TableSchema
from sampan.data.missing import missing_columns
from sampan.horizontal.party import HorizontalParty
from sampan.privacy.party_policy import PartyPrivacyPolicy, PolicyRefused
from sampan.wire import Message

SCHEMA = TableSchema(id="id", label="y", features=[{"name": "income", "impute": "median", "bounds": [0, 100]}])
MEDIAN = {"index": 0, "name": "income", "statistic": "median", "bounds": [0.0, 100.0], "bins": 1024}


def _bank(values: np.ndarray) -> HorizontalParty:
    X = values[:, None].copy()
    data = PartyData("bank_a", np.array([f"r{i}" for i in range(len(X))], dtype=object), X,
                     (np.arange(len(X)) % 3 == 0).astype(np.int8), SCHEMA.feature_names(), missing_columns(SCHEMA))
    return HorizontalParty("bank_a", data, data.subset(np.arange(0)), PartyPrivacyPolicy())


@pytest.mark.xfail(strict=True, reason="R13-IMP-3: without DP a bank answers unlimited impute_stats with "
                                       "coordinator-chosen windows: the exact value of a record is read")
def test_a_coordinator_cannot_zoom_in_on_one_value_without_dp() -> None:
    secret = 41.123456
    values = np.array([secret, 3.0, 17.5, 60.0, 88.0, np.nan])
    bank = _bank(values)
    handler = bank.handlers()["impute_stats"]
    lo, hi = 0.0, 100.0
    try:
        for _ in range(3):  # each round: the bin holding the value becomes the next window
            meta = {"columns": [{**MEDIAN, "bounds": [lo, hi]}]}
            hist = handler(Message("run-1", 0, "coordinator", "bank_a", "impute_stats", meta=meta)).arrays["hist"]
            inner = np.flatnonzero(hist[1:-1]) + 1  # bins strictly inside the window (edges take the clipped)
            width = (hi - lo) / 1024
            k = int(next(b for b in inner if lo + b * width <= secret < lo + (b + 1) * width))
            lo, hi = lo + k * width, lo + (k + 1) * width
    except (PolicyRefused, ValueError):
        return  # refused: the defence holds
    assert hi - lo > 1e-3, f"the record's value is pinned to [{lo!r}, {hi!r}]"


@pytest.mark.xfail(strict=True, reason="R13-IMP-3b: without DP a bank reveals the exact min and max of a column whose "
                                       "schema declares public bounds (receipt: only median columns without bounds)")
def test_exact_ranges_only_for_a_median_column_without_bounds() -> None:
    """R13-IMP-3b: the receipt lists "min/max of a median column without bounds"; the bank answers `ranges` for any
    column it imputes, also one with declared public bounds (here income, bounds [0, 100]): the largest and the
    smallest customer's exact values."""
    bank = _bank(np.array([41.123456, 3.0, 17.5, 60.0, 88.0, np.nan]))
    meta = {"ranges": [{"index": 0, "name": "income"}]}
    try:
        reply = bank.handlers()["impute_stats"](Message("run-1", 0, "coordinator", "bank_a", "impute_stats", meta=meta))
    except (PolicyRefused, ValueError):
        return
    assert reply.is_error, f"exact extremes released: {reply.arrays['low']}, {reply.arrays['high']}"
