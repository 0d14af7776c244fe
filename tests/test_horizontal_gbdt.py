"""Horizontal GBDT: summed per-bank histograms grow the pooled learner's trees."""

from __future__ import annotations

import numpy as np

from sampan.core.party import PartyApp
from sampan.data import make_sme_consortium
from sampan.horizontal.gbdt import HorizontalGBDTParty, predict_horizontal, train_horizontal_gbdt
from sampan.metrics import roc_auc
from sampan.models.gbdt import GBDTParams, apply_bins, make_slots
from sampan.models.gbdt_local import fit_local, predict_local
from sampan.transport.inprocess import InProcessTransport


def test_horizontal_gbdt_equals_the_pooled_learner_on_the_shared_bins() -> None:
    banks = make_sme_consortium(4000, seed=3).horizontal
    rng = np.random.default_rng(0)
    apps, train, val = {}, {}, {}
    for name, data in banks.items():
        order = rng.permutation(len(data))
        cut = int(0.8 * len(data))
        train[name], val[name] = data.subset(order[:cut]), data.subset(order[cut:])
        app = PartyApp(name)
        for kind, handler in HorizontalGBDTParty(name, train[name], val[name]).handlers().items():
            app.register(kind, handler)
        apps[name] = app
    params = GBDTParams(n_trees=6, max_depth=3, n_bins=16, learning_rate=0.3, early_stopping_rounds=50)
    names = list(next(iter(banks.values())).feature_names)
    result = train_horizontal_gbdt(InProcessTransport(apps), "h1", list(banks), params, names)
    X = np.vstack([train[b].X for b in banks])
    y = np.concatenate([train[b].y for b in banks]).astype(float)
    Xv = np.vstack([val[b].X for b in banks])
    yv = np.concatenate([val[b].y for b in banks]).astype(float)
    slots = {"all": make_slots("all", names, result.edges, missing=True)}
    ref, provider = fit_local(params, {"all": apply_bins(X, result.edges, missing=True)}, slots, y,
                              val_bins={"all": apply_bins(Xv, result.edges, missing=True)}, y_val=yv)
    assert len(result.model.trees) == len(ref.trees)
    for mine, theirs in zip(result.model.trees, ref.trees, strict=False):
        assert mine.left == theirs.left
        np.testing.assert_allclose(mine.value, theirs.value, atol=1e-9)
    np.testing.assert_allclose(
        predict_horizontal(result, Xv),
        predict_local(ref, provider, {"all": apply_bins(Xv, result.edges, missing=True)}), atol=1e-9
    )
    assert roc_auc(yv, predict_horizontal(result, Xv)) > 0.7


def test_gbdt_demo_runs_and_matches_the_pooled_learner(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from sampan.cli import app

    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--model",
            "gbdt",
            "--seed",
            "4",
            "--store",
            f"sqlite:///{tmp_path / 'r.db'}",
            "--report-dir",
            str(tmp_path / "rep"),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "federated GBDT" in line or "pooled data" in line]
    assert len(lines) == 2 and lines[0].split("│")[2] == lines[1].split("│")[2]  # same AUC
    assert list((tmp_path / "rep").glob("*.html"))
