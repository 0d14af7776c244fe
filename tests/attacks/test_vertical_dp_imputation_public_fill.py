"""Found in review (issue 13), fixed: vertical local imputation (`sampan.data.missing.impute_locally`, applied to
every vertical party's table at setup by `sampan.vertical.capability`), against the vertical DP accounts.

R13-VIMP-1: the vertical DP histogram accounts (WOE counts, GBDT partner histograms; `histogram_privacy`) charge
one customer's binned record, stating as their only assumption that the partner's bin EDGES are held fixed. Local
imputation adds a dependence the accounts do not state: a missing cell is filled with the median of ALL the
party's present cells, so adding one customer moves the fill value, and with it the binned record of EVERY
customer whose cell is missing, across a fixed edge (the median is a natural edge: the 50% quantile of the filled
training column). With edges pinned, D and D+1 then differ in k other customers' bins (k = missing cells), not in
one: the charged sensitivity 1 is exceeded k-fold. (data/missing.py `impute_locally` / `local_fill_values`.)
The defence: under vertical DP (the job announced WOE or GBDT DP, or the party's policy requires DP) a party fills
from public information only, the midpoint of the column's declared bounds (`public_fill_values`); a column
without bounds is refused at config time and by the party.
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.data import PartyData, TableSchema
from sampan.data.missing import impute_locally, missing_columns
from sampan.models.gbdt_tree import apply_bins, quantile_bin_edges

SCHEMA = TableSchema(id="id", label=None, features=[{"name": "turnover", "impute": "median", "bounds": [0, 200]}])
UNBOUNDED = TableSchema(id="id", label=None, features=[{"name": "turnover", "impute": "median"}])


def _partner(values: list[float], schema: TableSchema = SCHEMA) -> PartyData:
    X = np.array(values, dtype=np.float64)[:, None]
    return PartyData("payments", np.array([f"c{i}" for i in range(len(values))], dtype=object), X, None,
                     schema.feature_names(), missing_columns(schema))


def test_one_added_customer_changes_only_its_own_binned_record() -> None:
    """R13-VIMP-1: D + one customer moves the median fill and k other customers' bins."""
    present = [float(v) for v in range(1, 11)]
    d = _partner(present + [np.nan] * 5)                 # D: 10 present cells, 5 missing
    d1 = _partner(present + [np.nan] * 5 + [100.0])      # D + one customer (present, large)
    X, X1 = impute_locally(d, public=True).X, impute_locally(d1, public=True).X  # a party under vertical DP
    edges = [quantile_bin_edges(X[:, 0], 4)]             # the edges, held fixed as the accounts assume
    moved = apply_bins(X, edges)[:, 0] != apply_bins(X1[: len(X)], edges)[:, 0]
    assert int(moved.sum()) == 0, f"{int(moved.sum())} other customers changed bins"


def test_under_vertical_dp_a_column_without_bounds_is_refused() -> None:
    """No public fill without bounds: the party refuses (naming the column) rather than read a median off its rows,
    and so does the run config."""
    with pytest.raises(ValueError, match="turnover"):
        impute_locally(_partner([1.0, np.nan], UNBOUNDED), public=True)
    from sampan.data.missing import check_run_policies

    with pytest.raises(ValueError, match="turnover"):
        check_run_policies(UNBOUNDED, workflow="vertical", models=["lr", "scorecard"], private=True)
    check_run_policies(UNBOUNDED, workflow="vertical", models=["lr", "scorecard"], private=False)


def test_a_party_of_a_job_announced_with_vertical_dp_fills_publicly() -> None:
    """The party learns the run is DP from the job it accepted (or its own policy), at setup, before any request."""
    from sampan.core.capability import PartySetup
    from sampan.privacy.party_policy import PartyPrivacyPolicy
    from sampan.vertical.capability import vertical_dp

    job = {"workflow": "vertical", "parties": ["bank", "payments"], "label_holder": "bank"}
    data = _partner([1.0, np.nan])
    assert not vertical_dp(PartySetup("payments", data, job))
    assert vertical_dp(PartySetup("payments", data, {**job, "protections": ["gbdt_dp"]}))
    assert vertical_dp(PartySetup("payments", data, job, policy=PartyPrivacyPolicy(
        required_levels=frozenset({"GBDT"}))))
    assert impute_locally(data, public=True).X[1, 0] == 100.0  # the midpoint of [0, 200]


def test_a_loaded_part_refills_the_scoring_table_with_the_values_training_used() -> None:
    """The reviewer's scoring note: a scoring run rebuilt each party's fill from the table it held then; the part
    now records the training fill values and loading it re-imputes the scoring views with them."""
    from types import SimpleNamespace

    from sampan.vertical.fill_record import recorded_fill, refill

    trained = impute_locally(_partner([1.0, 2.0, 3.0, np.nan], UNBOUNDED))  # its median: 2
    meta = recorded_fill(trained)
    assert meta == {"fill_values": [2.0]}
    today = _partner([50.0, 60.0, 70.0, np.nan], UNBOUNDED)  # the table at scoring time: its median 60
    party = SimpleNamespace(name="payments", data=impute_locally(today), scoring=SimpleNamespace(X=None),
                            gbdt=SimpleNamespace(_X_full=None))
    assert party.data.X[3, 0] == 60.0
    refill(party, today, meta["fill_values"])
    assert party.data.X[3, 0] == party.scoring.X[3, 0] == party.gbdt._X_full[3, 0] == 2.0
