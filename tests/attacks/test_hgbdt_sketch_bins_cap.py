"""R13-HGB-3: without DP, a bank's quantile sketch must not return a column's raw values at any bin count named.

The receipt lists "per-feature quantile cut points" (the job's `n_bins`, at most 256 in `GBDTParams`), but
`HorizontalGBDTParty.sketch` took `n_bins` from the request unchecked: asked with n_bins = n - 1 it returned
`np.nanquantile` at k/(n-1), i.e. every interior order statistic, so the coordinator received the bank's raw
values of every column (sorted). Now the bank refuses a bin count above the job's announced one (and 256), and
computes at most one cut point per 10 present values of a column, interpolated onto the requested grid
(`sampan.horizontal.gbdt_checks`); the deploy gate refuses a sketch at another bin count than the job's.
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.data import PartyData
from sampan.deploy.allow import AllowSection, JobRefused, check_request
from sampan.horizontal.gbdt import HorizontalGBDTParty
from sampan.horizontal.gbdt_checks import GBDTRequestRefused
from sampan.wire import Message


def _party(max_bins: int | None) -> tuple[HorizontalGBDTParty, np.ndarray]:
    rng = np.random.default_rng(3)
    X = np.round(rng.normal(size=(300, 2)) * 1000) / 1000
    data = PartyData(party="bank", ids=np.array([f"r{i}" for i in range(300)], dtype=object), X=X,
                     y=(rng.random(300) < 0.3).astype(np.int8), feature_names=["a", "b"])
    return HorizontalGBDTParty("bank", data, max_bins=max_bins), X


def _sketch(party: HorizontalGBDTParty, n_bins: int) -> np.ndarray:
    return party.sketch(Message("run", 1, "coordinator", "bank", "hgb.sketch", {}, {"n_bins": n_bins})).arrays[
        "quantiles"]


@pytest.mark.parametrize("max_bins", [None, 256])
def test_a_quantile_sketch_never_returns_the_columns_raw_values(max_bins: int | None) -> None:
    party, X = _party(max_bins)
    with pytest.raises(GBDTRequestRefused):
        _sketch(party, 299)  # above the hard cap (256)
    quantiles = _sketch(party, 256)  # allowed: computed from 300 / 10 = 30 levels, interpolated
    assert quantiles.shape == (2, 255)
    leaked = np.isin(np.sort(X[:, 0])[1:-1], quantiles[0]).mean()
    assert leaked < 0.1, f"{leaked:.0%} of the column's values are in the sketch"


def test_a_sketch_above_the_jobs_bin_count_is_refused_by_the_bank_and_the_gate() -> None:
    party, _ = _party(16)
    assert _sketch(party, 16).shape == (2, 15)
    with pytest.raises(GBDTRequestRefused):
        _sketch(party, 17)
    job = {"workflow": "horizontal", "model": "gbdt", "gbdt": {"n_trees": 2, "max_depth": 2, "n_bins": 16}}
    check_request(AllowSection(), "bank", "hgb.sketch", {"n_bins": 16}, job)
    with pytest.raises(JobRefused):
        check_request(AllowSection(), "bank", "hgb.sketch", {"n_bins": 64}, job)
