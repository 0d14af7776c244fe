"""R13-HGB-1: a malicious coordinator makes a bank's gradients NaN; the noise must still hide which bins hold rows.

`hgb.leaves` added the coordinator's leaf values to the bank's running scores unchecked (an array over the wire, so
NaN travels); `hgb.setup` took `float()` of its base_score and pos_weight, so the JSON string "nan" did the
same. Then every row's next gradient was NaN, `np.clip` keeps NaN, and the Gaussian mechanism adds noise to NaN:
a released bin was NaN exactly when at least one row sat in it, finite otherwise (here the bin "f0 > 5" holds one
target row alone, so its membership left deterministically). The bank now refuses non-finite numbers at the
handler boundary (`sampan.horizontal.gbdt_checks`), and its releases are finite by construction: a row whose
gradient or hessian is not finite contributes 0 (as DP-SGD's guard, review R12-HOR-6).
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.core.capability import PartySetup
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL
from sampan.horizontal.gbdt import HorizontalGBDTParty
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.wire import Message

FEATURES = ["f0", "f1", "f2"]
DP = {"noise_multiplier": 4.0, "clip": [1.0, 0.25]}


def _bank(with_target: bool) -> object:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 3))
    y = (rng.random(40) < 0.4).astype(np.int8)
    if with_target:
        X, y = np.vstack([X, [[9.0, 9.0, 9.0]]]), np.append(y, np.int8(1))  # the only row with f0 > 5
    data = PartyData(party="bank", ids=np.array([f"r{i}" for i in range(len(X))], dtype=object), X=X, y=y,
                     feature_names=FEATURES)
    job = {"workflow": "horizontal", "model": "gbdt", "gbdt": {"n_trees": 2, "max_depth": 2, "dp": True}}
    return HORIZONTAL.party_app(PartySetup("bank", (data, data.subset(np.arange(5))), job,
                                           policy=PartyPrivacyPolicy()))


def _ask(app, step: int, kind: str, arrays: dict, meta: dict) -> Message:
    return app.handle(Message("run", step, "coordinator", "bank", kind, arrays, meta))


def _attack(with_target: bool, route: str) -> Message:
    app = _bank(with_target)
    setup = {"base_score": 0.0}
    if route != "leaves":  # a JSON string is JSON-safe and float("nan") accepts it
        setup[route] = "nan"
    _ask(app, 1, "hgb.setup", {"edges": np.array([5.0, 0.0, 0.0]), "counts": np.array([1, 1, 1])}, setup)
    _ask(app, 2, "hgb.hist", {"nodes": np.array([0])}, {"new_tree": True, "dp": DP})
    if route == "leaves":
        _ask(app, 3, "hgb.leaves", {"values": np.array([np.nan])}, {})  # every running score becomes NaN
    return _ask(app, 4, "hgb.hist", {"nodes": np.array([0])}, {"new_tree": True, "dp": DP})


@pytest.mark.parametrize("route", ["leaves", "base_score", "pos_weight"])
def test_noised_histograms_never_reveal_which_bins_hold_rows(route: str) -> None:
    replies = {flag: _attack(flag, route) for flag in (False, True)}
    target_bin = {flag: float(r.arrays["G:0"][1]) for flag, r in replies.items() if not r.is_error}
    # what should hold: the bank refuses the non-finite leaf values (or the request), or releases finite noised
    # sums only, so the target's bin is not NaN-if-present / finite-if-absent
    assert all(np.isfinite(v) for v in target_bin.values()), target_bin


def test_a_non_finite_running_score_contributes_nothing_to_the_histograms() -> None:
    """Finite by construction, whatever got past the checks: rows whose score is NaN or infinite add 0."""
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(30, 3)), (rng.random(30) < 0.4).astype(np.int8)
    data = PartyData(party="bank", ids=np.array([f"r{i}" for i in range(30)], dtype=object), X=X, y=y,
                     feature_names=FEATURES)
    bank = HorizontalGBDTParty("bank", data)
    bank.setup(Message("run", 1, "coordinator", "bank", "hgb.setup",
                       {"edges": np.array([0.0, 0.0, 0.0]), "counts": np.array([1, 1, 1])}, {"base_score": 0.0}))
    bank.raw[:10], bank.raw[10:12] = np.nan, np.inf
    reply = bank.hist(Message("run", 2, "coordinator", "bank", "hgb.hist", {"nodes": np.array([0])},
                              {"new_tree": True, "clip": [1.0, 0.25]}))
    assert np.all(np.isfinite(reply.arrays["G:0"])) and np.all(np.isfinite(reply.arrays["H:0"]))
    assert float(reply.arrays["H:0"][:2].sum()) == pytest.approx(18 * 0.25)  # the 18 finite rows at p = 1/2


@pytest.mark.parametrize("bad", ["nan_leaf", "cycle"])
def test_a_crafted_tree_payload_is_refused_before_any_row_is_scored(bad: str) -> None:
    """The same class in `evaluate`: a NaN leaf (NaN score iff a row reaches it) or a child pointing back (a loop iff a
    row reaches it) is refused from the payload alone, with or without the rows that would reach it."""
    from sampan.horizontal.gbdt_payload import predict_gbdt_payload
    from sampan.models.gbdt import Tree

    tree = Tree()
    root, left, right = tree.add(), tree.add(), tree.add()
    tree.left[root], tree.right[root], tree.owner[root] = left, right, "all"
    if bad == "nan_leaf":
        tree.value[right] = float("nan")
    else:
        tree.left[right], tree.right[right], tree.owner[right] = root, left, "all"
    model = {"kind": "gbdt", "base_score": 0.0, "trees": [tree.to_dict()], "missing_bins": True,
             "splits": [[0, root, 0, 0, False], [0, right, 0, 0, False]]}
    arrays = {"edges": np.array([5.0, 0.0, 0.0]), "edge_counts": np.array([1, 1, 1])}
    for X in (np.zeros((3, 3)), np.full((3, 3), 9.0)):  # no row / every row past the crafted node
        with pytest.raises(ValueError, match="gbdt model"):
            predict_gbdt_payload(model, arrays, X)
