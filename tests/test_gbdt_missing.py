"""GBDT native missing values (a learned default direction per split), gain importance and class weights."""

from __future__ import annotations

import numpy as np
import pytest
from test_vertical_gbdt import _pooled
from test_vertical_lr import _session, _vertical_tables

from sampan.metrics import roc_auc
from sampan.models.gbdt import (
    GBDTParams,
    Tree,
    apply_bins,
    base_score,
    gain_importance,
    grid_gradients,
    make_slots,
    named_importance,
    quantile_bin_edges,
)
from sampan.models.gbdt_local import fit_local, predict_local
from sampan.vertical.gbdt import score_vertical_gbdt, train_vertical_gbdt

STUMP = GBDTParams(n_trees=1, max_depth=1, learning_rate=0.5, n_bins=16)


def _fit(X: np.ndarray, y: np.ndarray, params: GBDTParams, *, missing: bool = True):  # type: ignore[no-untyped-def]
    edges = [quantile_bin_edges(X[:, j], params.n_bins) for j in range(X.shape[1])]
    bins = {"all": apply_bins(X, edges, missing=missing)}
    slots = {"all": make_slots("all", [f"x{j}" for j in range(X.shape[1])], edges, missing=missing)}
    model, provider = fit_local(params, bins, slots, y)
    return model, predict_local(model, provider, bins)


def _predictive_missingness(n: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Defaults sit at low x0, and a missing x0 means default (missing rows belong on the left)."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(n, 3))
    miss = rng.random(n) < 0.25
    y = ((X[:, 0] < -0.3) | miss).astype(float)
    X[miss, 0] = np.nan
    return X, y, miss


def test_the_missing_direction_is_learned_where_missingness_predicts_default() -> None:
    X, y, miss = _predictive_missingness()
    model, raw = _fit(X, y, STUMP)
    (tree,) = model.trees
    assert tree.feature[0] == 0 and tree.missing_left[0]  # the low-x0 (default) side, where NaN was sent
    assert raw[miss].min() > raw[~miss & (X[:, 0] > 0)].max()  # missing rows score with the defaults
    # without the missing bin, NaN falls in the top value bin (the safe side): clearly worse
    _, raw_old = _fit(X, y, STUMP, missing=False)
    assert roc_auc(y, raw) > roc_auc(y, raw_old) + 0.1


def test_values_left_missing_right_is_a_split_of_its_own() -> None:
    rng = np.random.default_rng(2)
    X = np.column_stack([rng.normal(size=1500), np.ones(1500)])  # x1: one observed value; missing = default
    miss = rng.random(1500) < 0.3
    X[miss, 1] = np.nan
    model, raw = _fit(X, miss.astype(float), STUMP)
    (tree,) = model.trees
    assert tree.feature[0] == 1 and not tree.missing_left[0]
    assert roc_auc(miss.astype(float), raw) == pytest.approx(1.0)


def test_trees_save_and_load_with_their_directions_and_old_trees_still_load() -> None:
    X, y, _ = _predictive_missingness(800)
    model, _ = _fit(X, y, GBDTParams(n_trees=3, max_depth=2, n_bins=8))
    for tree in model.trees:
        back = Tree.from_dict(tree.to_dict())
        assert back == tree
    old = {k: v for k, v in model.trees[0].to_dict().items() if k not in ("missing_left", "feature", "gain")}
    legacy = Tree.from_dict(old)  # a model saved before missing bins: missing values go right, no gains
    assert not any(legacy.missing_left) and gain_importance([legacy]) == {}
    assert legacy.value == model.trees[0].value


def test_gain_importance_sums_to_one_and_ranks_the_informative_feature_first() -> None:
    rng = np.random.default_rng(9)
    X = rng.normal(size=(1500, 4))
    y = (X[:, 2] + 0.3 * X[:, 0] + 0.5 * rng.normal(size=1500) > 0).astype(float)
    model, _ = _fit(X, y, GBDTParams(n_trees=10, max_depth=3, n_bins=16))
    share = gain_importance(model.trees)
    assert sum(share.values()) == pytest.approx(1.0) and all(v >= 0 for v in share.values())
    named = named_importance(share, {"all": ["a", "b", "c", "d"]})
    assert list(named)[0] == "c" and list(named)[1] == "a"
    two = named_importance({("bank", 0): 0.7, ("payments", 1): 0.3}, {"bank": ["age"], "payments": ["x", "spend"]})
    assert two == {"bank: age": 0.7, "payments: spend": 0.3}


def test_pos_weight_weights_the_defaults_and_keeps_per_record_gradients_bounded() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random(3000) < 0.08).astype(float)
    p = rng.random(3000)
    g, h = grid_gradients(p, y, 10.0)
    assert np.abs(g).max() <= 1.0 and h.max() <= 0.25  # what the vertical DP sensitivity rests on
    assert base_score(y, 10.0) == pytest.approx(np.log(10 * y.mean() / (1 - y.mean())))
    X = rng.normal(size=(3000, 2))
    params = GBDTParams(n_trees=1, max_depth=1, learning_rate=0.3, l2=2.0, pos_weight=10.0)
    model, raw = _fit(X, y, params)
    p0 = 1 / (1 + np.exp(-base_score(y, 10.0)))
    w = np.where(y > 0, 10.0, 1.0)  # the root's value in the weighted objective's own units
    expected = -0.3 * np.sum(w * (p0 - y)) / (np.sum(w * p0 * (1 - p0)) + 2.0)
    assert model.trees[0].node_value[0] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    _, raw1 = _fit(X, y, GBDTParams(n_trees=1, max_depth=1, learning_rate=0.3, l2=2.0))
    assert raw.mean() > raw1.mean() + 1.0  # weighted defaults: higher scores all round
    with pytest.raises(ValueError, match="pos_weight"):
        GBDTParams(pos_weight=0.0)


def test_vertical_gbdt_with_nan_in_a_partner_column_grows_the_pooled_trees() -> None:
    tables = _vertical_tables(False)
    payments = tables["payments"]
    rng = np.random.default_rng(3)
    gone = rng.random(len(payments)) < 0.3
    payments.X[gone, 0] = np.nan  # a partner column with missing values (kept NaN, policy "native")
    # missing values mostly where defaults are: the direction matters
    y_by_id = dict(zip(tables["bank"].ids, tables["bank"].y, strict=True))
    payments.X[[i for i, id_ in enumerate(payments.ids) if y_by_id.get(id_) == 1][:60], 0] = np.nan
    session, parties, transport = _session(tables)
    splits = session.splits(seed=1)
    # class weights travel to the bank's learner (partners see only masked, unit-scaled gradients)
    params = GBDTParams(n_trees=6, max_depth=3, learning_rate=0.3, n_bins=16, early_stopping_rounds=50, pos_weight=3.0)
    result = train_vertical_gbdt(transport, session.run_id, "bank", ["payments"], splits.train, splits.val, params)
    model = parties["bank"].gbdt.model
    ref, provider, test_bins, y = _pooled({k: parties[k] for k in ("bank", "payments")}, splits, params)
    assert len(model.trees) == len(ref.trees)
    for mine, theirs in zip(model.trees, ref.trees, strict=True):
        assert (mine.owner, mine.left, mine.feature, mine.missing_left) == (
            theirs.owner, theirs.left, theirs.feature, theirs.missing_left)
        np.testing.assert_allclose(mine.value, theirs.value, atol=1e-7)
    partner = parties["payments"].gbdt
    assert any(f == 0 for f, _, _ in partner.thresholds.values())  # the NaN column is used, by the partner
    assert set(result.importance) >= {"payments: " + payments.feature_names[0]}
    assert sum(result.importance.values()) == pytest.approx(1.0)
    _, bank_meta = parties["bank"].gbdt.part_arrays()  # the bank's saved part carries the importance
    assert bank_meta["importance"] == result.importance and bank_meta["params"]["pos_weight"] == 3.0
    reply = score_vertical_gbdt(transport, session.relay, "bank", ["payments"], "eval", aligned=splits.test)
    assert reply.meta["auc"] == pytest.approx(roc_auc(y[splits.test], predict_local(ref, provider, test_bins)),
                                              abs=1e-12)
    # an applicant whose partner value is missing is scored through the learned directions
    applicant = str(payments.ids[np.flatnonzero(np.isnan(payments.X[:, 0]))[0]])
    score_vertical_gbdt(transport, session.relay, "bank", ["payments"], "s1", applicants=[applicant])
    (res,) = parties["bank"].gbdt.results["s1"]
    assert 0 < res["probability_of_default"] < 1 and "payments" not in res["missing_at"]
    # the partner's part saves and loads with its directions; a part saved before them loads as "missing right"
    arrays, meta = partner.part_arrays()
    keys = sorted(partner.thresholds)
    X_nan = payments.X[np.isnan(payments.X[:, 0])][:20]
    before = partner.decisions_for(X_nan, keys)
    partner.load_part(arrays, meta)
    np.testing.assert_array_equal(partner.decisions_for(X_nan, keys), before)
    partner.load_part({**arrays, "thresholds": arrays["thresholds"][:, :4]}, meta)
    assert not any(m for _, _, m in partner.thresholds.values())


def test_the_vertical_report_shows_gain_importance_under_each_partys_feature_names() -> None:
    from sampan.runtime.reports_vertical import vertical_sections

    sections = vertical_sections({"gbdt_importance": {"payments: spend<x>": 0.25, "bank: age": 0.75}}, {})
    (section,) = [s for s in sections if s.title.startswith("Feature importance (gain)")]
    assert section.html.index("bank: age") < section.html.index("payments: spend&lt;x&gt;")  # largest first, escaped
    assert "75.0%" in section.html and "25.0%" in section.html


def test_vertical_gbdt_config_takes_a_positive_class_weight() -> None:
    from sampan.config.vertical import VerticalSection

    section = VerticalSection(label_holder="bank", models=("lr", "gbdt"), gbdt={"n_trees": 5, "pos_weight": 4.0})
    assert section.gbdt_params() == GBDTParams(n_trees=5, pos_weight=4.0)
    assert VerticalSection(label_holder="bank").gbdt_params().pos_weight == 1.0
    with pytest.raises(ValueError, match="pos_weight"):
        VerticalSection(label_holder="bank", gbdt={"pos_weight": 0})
