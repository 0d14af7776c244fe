"""Vertical GBDT with missing partner values (issue 13): the missing bin is covered by the charged histograms.

Claims attacked (`sampan.vertical.gbdt_views`, `histogram_sensitivity2`): each partner feature's missing bin is
one more bin of the same noised release, so (a) a customer whose partner values go from observed to missing
moves the first release by at most the charged sensitivity, every other differing field being declared, and
(b) the bank, a curious label holder, never decodes the exact count of missing values in a partner column.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_neighbouring_vertical import _check, _fixed_randomness, _neighbour_rows, _setup

from sampan.models.gbdt import GBDTParams
from sampan.vertical.gbdt import VIEWS as GBDT_VIEWS
from sampan.vertical.gbdt import train_vertical_gbdt

PARAMS = GBDTParams(n_trees=1, max_depth=2, n_bins=8, early_stopping_rounds=50)


def test_a_partner_record_turning_missing_moves_the_release_by_at_most_the_charged_sensitivity(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reset = _fixed_randomness(monkeypatch, pin_edges=True)
    session, parties, recorder = _setup(("payments",))
    rows, _ = _neighbour_rows(session)
    val = np.setdiff1d(np.arange(session.n_aligned or 0), rows)[:200]
    payments = parties["payments"]
    aligned = payments.psi.aligned_rows
    X = payments.data.X
    original = X.copy()
    X[aligned[rows[::7]], 0] = np.nan  # a column with missing values already (policy "native")
    with_nan = X.copy()
    y = parties["bank"].data.y[parties["bank"].psi.aligned_rows]
    who = next(r for r in rows if y[r] == 1 and not np.isnan(with_nan[aligned[r]]).any())  # largest |g|
    runs = []
    try:
        for turned in (False, True):
            reset()
            recorder.views, recorder._seen = {}, {}
            X[:] = with_nan
            if turned:
                X[aligned[who]] = np.nan  # the neighbour: this customer's partner values all missing
            result = train_vertical_gbdt(recorder, session.run_id, "bank", ["payments"], rows, val, PARAMS,
                                         hist_noise=3.0)
            runs.append((dict(recorder.views), result))
    finally:
        X[:] = original
    (a, res_a), (b, _) = runs
    _check(GBDT_VIEWS, recorder, a, b, res_a.privacy, check_sensitivity=True)
    root = ("bank", "vgb.step", 1, "decoded:payments")
    assert np.linalg.norm(a[root][0] - b[root][0]) > 0  # the missing bins did move, within the charge above


def test_the_bank_never_decodes_the_exact_missing_count_of_a_partner_column(monkeypatch: pytest.MonkeyPatch) -> None:
    reset = _fixed_randomness(monkeypatch)
    reset()
    session, parties, recorder = _setup(("payments",))
    rows, _ = _neighbour_rows(session)
    payments = parties["payments"]
    X = payments.data.X
    original = X.copy()
    aligned = payments.psi.aligned_rows
    X[aligned[rows[::5]], 0] = np.nan
    try:
        train_vertical_gbdt(recorder, session.run_id, "bank", ["payments"], rows, np.arange(0), PARAMS,
                            hist_noise=3.0)
        exact = int(np.isnan(X[aligned[rows], 0]).sum())
    finally:
        X[:] = original
    missing_bin = len(payments.gbdt.edges[0]) + 1  # feature 0's missing bin (its offset is 0)
    (G, H) = recorder.views[("bank", "vgb.step", 1, "decoded:payments")][0][:, missing_bin]  # the root node
    p = parties["bank"].data.y[parties["bank"].psi.aligned_rows][rows].mean()
    assert abs(H - exact * p * (1 - p)) > 1e-6 and abs(G) > 0  # noised: the count is not read off exactly
