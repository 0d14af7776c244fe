"""R15-GBDT-3 (fixed): a coordinator's `hgb.hist` naming one node many times made the bank's memory grow ~K^2.

Attack (malicious coordinator, horizontal GBDT without DP): after `hgb.setup`, send `hgb.hist` with `nodes` = the
root repeated K times (an 8*K-byte array). `TreeShape.check_nodes` only checks each node id is in the tree (the DP
mod refuses repeats, the plain path does not). Before issue 15 the bank looped node by node and answered one
`G:0`/`H:0` pair: memory flat in K (3.55 MB at K = 1, 100 and 400 here, measured on d48b24d). Now
`level_histograms` concatenates every requested node's rows (12 bytes per position: K x n) and each row block's
partial is (K, 2, bins) float64, held for every block before the reduce: 1.8 MB at K = 1, 51 MB at K = 100,
361 MB at K = 400 on a 20,000-row bank; a bank of 1M rows is killed by a request of a few KB. Safe behaviour:
a histogram request with a repeated node is refused with a clear error (as under DP), or each distinct node is
summed once, so the bank's memory does not depend on K. Now `TreeShape.check_nodes` refuses a repeated node with or
without DP, naming the field, before any row is read (and the totals-only request too).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from sampan.core.capability import PartySetup
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.wire import Message


def _hist_peak(repeats: int, totals: bool = False) -> tuple[Message, int]:
    rng = np.random.default_rng(0)
    n, d = 20_000, 10
    X, y = rng.normal(size=(n, d)), (rng.random(n) < 0.4).astype(np.int8)
    data = PartyData(party="bank", ids=np.array([f"r{i}" for i in range(n)], dtype=object), X=X, y=y,
                     feature_names=[f"f{j}" for j in range(d)])
    job = {"workflow": "horizontal", "model": "gbdt", "gbdt": {"n_trees": 2, "max_depth": 2}}
    app = HORIZONTAL.party_app(PartySetup("bank", (data, data.subset(np.arange(5))), job, policy=PartyPrivacyPolicy()))
    setup = app.handle(Message("run", 1, "coordinator", "bank", "hgb.setup",
                               {"edges": np.tile(np.linspace(-2, 2, 31), d), "counts": np.full(d, 31)},
                               {"base_score": 0.0}))
    assert not setup.is_error
    tracemalloc.start()
    try:
        reply = app.handle(Message("run", 2, "coordinator", "bank", "hgb.hist",
                                   {"nodes": np.zeros(repeats, dtype=np.int64)},
                                   {"new_tree": True, "totals": totals}))
        return reply, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("totals", [False, True], ids=["histograms", "totals"])
def test_repeated_nodes_are_refused_naming_the_field_and_cost_no_more_than_one(totals: bool) -> None:
    ok, once = _hist_peak(1, totals)
    assert not ok.is_error
    refused, many = _hist_peak(100, totals)
    assert refused.is_error and refused.meta["error_type"] == "GBDTRequestRefused"
    assert "'nodes'" in refused.meta["error"] and "more than once" in refused.meta["error"]
    assert many < 4 * once, f"peak {once / 1e6:.1f} MB for the root once, {many / 1e6:.1f} MB for it 100x"
