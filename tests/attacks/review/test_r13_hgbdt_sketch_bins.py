"""Review R13-HGB-3: without DP, a bank's quantile sketch is answered at any bin count the coordinator names.

The receipt lists "per-feature quantile cut points" (the job's `n_bins`, at most 256 in `GBDTParams`), but
`HorizontalGBDTParty.sketch` takes `n_bins` from the request unchecked: asked with n_bins = n - 1 it returns
`np.nanquantile` at k/(n-1), i.e. every interior order statistic, so the coordinator receives the bank's raw
values of every column (sorted), beyond what the receipt describes.
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.data import PartyData
from sampan.horizontal.gbdt import HorizontalGBDTParty
from sampan.wire import Message


@pytest.mark.xfail(strict=True, reason="R13-HGB-3: the non-DP quantile sketch is answered at any n_bins: the "
                                       "coordinator receives every raw value of every column")
def test_a_quantile_sketch_never_returns_the_columns_raw_values() -> None:
    rng = np.random.default_rng(3)
    X = np.round(rng.normal(size=(300, 2)) * 1000) / 1000
    data = PartyData(party="bank", ids=np.array([f"r{i}" for i in range(300)], dtype=object), X=X,
                     y=(rng.random(300) < 0.3).astype(np.int8), feature_names=["a", "b"])
    party = HorizontalGBDTParty("bank", data)
    reply = party.sketch(Message("run", 1, "coordinator", "bank", "hgb.sketch", {}, {"n_bins": 299}))
    leaked = np.isin(np.sort(X[:, 0])[1:-1], reply.arrays["quantiles"][0]).mean()
    assert leaked < 0.5, f"{leaked:.0%} of the column's values are in the sketch"
