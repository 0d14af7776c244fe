"""R15-GBDT-3: a coordinator's `hgb.hist` naming one node many times makes the bank's memory grow ~quadratically.

Attack (malicious coordinator, horizontal GBDT without DP): after `hgb.setup`, send `hgb.hist` with `nodes` = the
root repeated K times (an 8*K-byte array). `TreeShape.check_nodes` only checks each node id is in the tree (the DP
mod refuses repeats, the plain path does not). Before issue 15 the bank looped node by node and answered one
`G:0`/`H:0` pair: memory flat in K (3.55 MB at K = 1, 100 and 400 here, measured on d48b24d). Now
`level_histograms` concatenates every requested node's rows (12 bytes per position: K x n) and each row block's
partial is (K, 2, bins) float64, held for every block before the reduce: 1.8 MB at K = 1, 51 MB at K = 100,
361 MB at K = 400 on a 20,000-row bank; a bank of 1M rows is killed by a request of a few KB. Safe behaviour:
a histogram request with a repeated node is refused with a clear error (as under DP), or each distinct node is
summed once, so the bank's memory does not depend on K.
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


def _hist_peak(repeats: int) -> tuple[bool, int]:
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
                                   {"nodes": np.zeros(repeats, dtype=np.int64)}, {"new_tree": True}))
        return reply.is_error, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.xfail(strict=True, reason="R15-GBDT-3: hgb.hist with the root repeated K times: bank memory grows ~K^2 "
                                       "(rows and per-block partials per repeat), was flat before level_histograms")
def test_repeated_nodes_are_refused_or_cost_no_more_than_one() -> None:
    _, once = _hist_peak(1)
    refused, many = _hist_peak(100)
    assert refused or many < 4 * once, f"peak {once / 1e6:.1f} MB for the root once, {many / 1e6:.1f} MB for it 100x"
