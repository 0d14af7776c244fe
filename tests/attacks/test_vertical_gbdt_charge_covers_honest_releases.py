"""Review (issue 12, vertical) R12-VER-7a (fixed): the GBDT run-ledger charge covers an honest run's node releases.

`vertical.noise_plan.gbdt_events` charges each partner n_trees x (2^max_depth - 1) node histograms, write-ahead.
The learner (`sampan.models.gbdt.boost`) used to request n_trees x 2^max_depth: at the last level it asked for
the smaller child's histogram of every split although those children are leaves whose histograms are never
read. It now requests none there (at most 2^(max_depth-1) per tree, trees bit-identical), so the charge is an
upper bound of what an honest run releases.
"""


from __future__ import annotations

import pytest

import sampan.vertical.psi_party
from sampan.data import make_sme_consortium
from sampan.models.gbdt import GBDTParams
from sampan.privacy.randomness import seeded_generator
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical.gbdt import train_vertical_gbdt
from sampan.vertical.noise_plan import gbdt_events
from sampan.vertical.session import Splits, VerticalSession


def _session() -> tuple:
    tables = {k: v for k, v in make_sme_consortium(2000, seed=11).vertical.items() if k in ("bank", "payments")}
    transport, _ = build_inprocess_vertical(tables)
    session = VerticalSession(transport, label_holder="bank", partners=["payments"], run_id="r12-ver-7")
    session.connect()
    session.align()
    slots = {"payments": {"n_bins": [8] * len(tables["payments"].feature_names)}}
    return transport, session, Splits.random(session.n_aligned or 0, seed=1), slots


def test_the_charged_gbdt_bound_covers_an_honest_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampan.vertical.psi_party, "_secure_permutation", lambda n: seeded_generator(1).permutation(n))
    params, sigma = GBDTParams(n_trees=2, max_depth=2, n_bins=8, early_stopping_rounds=50), 4.0
    transport, session, splits, slots = _session()
    bound = gbdt_events(slots, "bank", sigma, params)[0].count  # what VerticalWorkflow._gbdt charges, write-ahead
    result = train_vertical_gbdt(transport, session.run_id, "bank", ["payments"], splits.train, splits.val, params,
                                 hist_noise=sigma)  # the same params the workflow passes
    released = int(result.privacy["payments"]["releases"])
    assert released <= bound, f"an honest run released {released} node histograms; the run charged {bound}"
