"""Found in review (issue 13), fixed: exact imputation statistics (no DP) through a bank's public
`impute_stats` handler, as a curious coordinator.

R13-IMP-3: without DP the receipt lists "a histogram over public bins (median)" per imputed column, but the bank
answers ANY number of `impute_stats` requests in a run, each over bounds and bins the coordinator picks (it ignores
the bounds its own [schema] declares for the column, and the run's MEDIAN_BINS). Zooming windows of 1024 bins
read every present value of every imputed column to any precision: the column's whole multiset, not a median
sketch. Under DP the same bank answers one request per run; without DP nothing bounds it.
(horizontal/imputation.py `impute_statistics`; privacy/imputation.py `imputation_mod`, the branch without dp.)
The defence: the bank bins only over the bounds its own schema declares, in the run's bin count, once per run
(`sampan.privacy.imputation_request`), and answers `ranges` only for median columns without declared bounds.
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


def test_a_coordinator_cannot_zoom_in_on_one_value_without_dp() -> None:
    """R13-IMP-3: zooming windows of 1024 bins pin one record's value."""
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


def test_a_window_on_part_of_an_unbounded_column_is_refused() -> None:
    """R13-IMP-3 for a median column WITHOUT declared bounds (exact runs only): the window the coordinator sends
    must hold every present value of the bank (it comes from the pooled `ranges`), and is answered once per run."""
    schema = TableSchema(id="id", label="y", features=[{"name": "income", "impute": "median"}])
    values = np.array([41.123456, 3.0, 17.5, 60.0, 88.0, np.nan])
    data = PartyData("bank_a", np.array([f"r{i}" for i in range(6)], dtype=object), values[:, None].copy(),
                     (np.arange(6) % 3 == 0).astype(np.int8), schema.feature_names(), missing_columns(schema))
    bank = HorizontalParty("bank_a", data, data.subset(np.arange(0)), PartyPrivacyPolicy())
    handler = bank.handlers()["impute_stats"]

    def ask(meta: dict) -> Message:
        return handler(Message("run-1", 0, "coordinator", "bank_a", "impute_stats", meta=meta))

    ranges = ask({"ranges": [{"index": 0, "name": "income"}]})
    assert (float(ranges.arrays["low"][0]), float(ranges.arrays["high"][0])) == (3.0, 88.0)
    with pytest.raises(PolicyRefused, match="must hold all its values"):
        ask({"columns": [{**MEDIAN, "bounds": [40.0, 42.0]}]})
    ask({"columns": [{**MEDIAN, "bounds": [3.0, 88.0]}]})
    with pytest.raises(PolicyRefused, match="one per run"):
        ask({"columns": [{**MEDIAN, "bounds": [2.0, 88.0]}]})


def test_a_party_of_a_dp_job_answers_no_exact_range_even_before_its_first_dp_request() -> None:
    """Reviewer's note on R13-IMP-3: in a DP run, an exact `ranges` (or exact statistics) asked BEFORE the run's
    first DP request was answered; the party knows the run is DP from the job it accepted (simulation too)."""
    from sampan.core.capability import PartySetup
    from sampan.horizontal.capability import horizontal_party

    schema = TableSchema(id="id", label="y", features=[{"name": "income", "impute": "median"}])
    values = np.array([41.123456, 3.0, 17.5, 60.0, 88.0, np.nan])
    data = PartyData("bank_a", np.array([f"r{i}" for i in range(6)], dtype=object), values[:, None].copy(),
                     (np.arange(6) % 3 == 0).astype(np.int8), schema.feature_names(), missing_columns(schema))
    setup = PartySetup("bank_a", (data, data.subset(np.arange(0))),
                       {"workflow": "horizontal", "model": "logistic", "protections": ["dp"]}, options={"secagg": None})
    handler = horizontal_party(setup).handlers()["impute_stats"]
    with pytest.raises(PolicyRefused, match="without dp"):
        handler(Message("run-1", 0, "coordinator", "bank_a", "impute_stats",
                        meta={"ranges": [{"index": 0, "name": "income"}]}))


def test_an_all_missing_column_is_said_to_be_filled_with_a_default(caplog: pytest.LogCaptureFixture) -> None:
    """Reviewer's note: a column with no present value was filled silently (0 or the bounds' midpoint)."""
    from sampan.data.missing import local_fill_values
    from sampan.horizontal.imputation import _empty_columns

    columns = [{"index": 0, "name": "income", "statistic": "median", "bins": 4},
               {"index": 1, "name": "debt", "statistic": "mean"}]
    totals = {"count": np.array([3.0]), "sum": np.array([0.5]), "hist": np.zeros(4)}
    assert _empty_columns(columns, totals) == ["income"]
    with caplog.at_level("WARNING"):
        values = local_fill_values(np.full((3, 1), np.nan), missing_columns(SCHEMA))
    assert values[0] == 0.0 and "no present value" in caplog.text
