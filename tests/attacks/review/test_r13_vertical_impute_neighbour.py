"""Review (issue 13) of vertical local imputation (`sampan.data.missing.impute_locally`, applied to every vertical
party's table at setup by `sampan.vertical.capability`), against the vertical DP accounts.

R13-VIMP-1: the vertical DP histogram accounts (WOE counts, GBDT partner histograms; `histogram_privacy`) charge
one customer's binned record, stating as their only assumption that the partner's bin EDGES are held fixed. Local
imputation adds a dependence the accounts do not state: a missing cell is filled with the median of ALL the
party's present cells, so adding one customer moves the fill value, and with it the binned record of EVERY
customer whose cell is missing, across a fixed edge (the median is a natural edge: the 50% quantile of the filled
training column). With edges pinned, D and D+1 then differ in k other customers' bins (k = missing cells), not in
one: the charged sensitivity 1 is exceeded k-fold. (data/missing.py `impute_locally` / `local_fill_values`.)
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.data import PartyData, TableSchema
from sampan.data.missing import impute_locally, missing_columns
from sampan.models.gbdt_tree import apply_bins, quantile_bin_edges

SCHEMA = TableSchema(id="id", label=None, features=[{"name": "turnover", "impute": "median"}])


def _partner(values: list[float]) -> PartyData:
    X = np.array(values, dtype=np.float64)[:, None]
    return PartyData("payments", np.array([f"c{i}" for i in range(len(values))], dtype=object), X, None,
                     SCHEMA.feature_names(), missing_columns(SCHEMA))


@pytest.mark.xfail(strict=True, reason="R13-VIMP-1: one added customer moves the local median fill and so the binned "
                                       "record of every customer with a missing cell (edges fixed)")
def test_one_added_customer_changes_only_its_own_binned_record() -> None:
    present = [float(v) for v in range(1, 11)]
    d = _partner(present + [np.nan] * 5)                 # D: 10 present cells, 5 missing
    d1 = _partner(present + [np.nan] * 5 + [100.0])      # D + one customer (present, large)
    X, X1 = impute_locally(d).X, impute_locally(d1).X
    edges = [quantile_bin_edges(X[:, 0], 4)]             # the edges, held fixed as the accounts assume
    moved = apply_bins(X, edges)[:, 0] != apply_bins(X1[: len(X)], edges)[:, 0]
    assert int(moved.sum()) == 0, f"{int(moved.sum())} other customers changed bins"
