"""Vertical reports are never half empty: every model trained has its ROC, calibration and training curves, is named
in the title, the best comes first, raw message tables are folded, and nothing prints as nan or "No data"."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from sampan.metrics.score_bands import calibration_from_bands, roc_from_bands, score_bands
from sampan.models.gbdt import GBDTParams
from sampan.runtime.reporting import write_run_report
from sampan.runtime.reports_vertical_models import GBDT_NAME, LR_NAME, SCORECARD_NAME
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store
from sampan.vertical.job import VerticalJob
from sampan.vertical.training import VerticalLRConfig

NAMES = {"lr": LR_NAME, "scorecard": SCORECARD_NAME, "gbdt": GBDT_NAME}


@pytest.fixture(scope="module")
def full_run() -> tuple[Store, str, dict[str, Any]]:
    """One run with every model; the other combinations are this run's info with models taken out."""
    job = VerticalJob(name="vrep", label_holder="bank", partners=("payments", "delivery"),
                      models=("lr", "scorecard", "gbdt"), lr=VerticalLRConfig(epochs=2),
                      gbdt=GBDTParams(n_trees=4, max_depth=2), seed=2,
                      source={"kind": "consortium", "n_smes": 4000, "seed": 4})
    store = Store.open("sqlite://")
    run_id = start_run(job, store).run_id
    return store, run_id, copy.deepcopy(store.get_run(run_id).info or {})


def _render(run: tuple[Store, str, dict[str, Any]], models: tuple[str, ...], tmp_path: Path,
            edit: Any = None) -> tuple[str, dict[str, Any]]:
    store, run_id, stored = run
    info = copy.deepcopy(stored)
    vertical = info["vertical"]
    for kind, name in NAMES.items():
        if kind not in models:
            vertical["comparison"].pop(name, None)
            vertical.get("curves", {}).pop({"scorecard": "scorecard_training", "gbdt": "gbdt_training"}.get(kind, ""),
                                            None)
            if kind == "scorecard":
                vertical["scorecard"], vertical["iv"] = [], {}
    if edit is not None:
        edit(vertical)
    store.record_info(run_id, "vertical", vertical)
    page = write_run_report(store, run_id, tmp_path / "-".join(models)).read_text()
    return page, vertical


def _assert_complete(page: str, models: tuple[str, ...]) -> None:
    assert "nan" not in re.sub(r"<[^>]+>", " ", page).lower().split() and "NaN" not in page
    assert "No data" not in page
    for chart in re.findall(r"<svg.*?</svg>", page, flags=re.S):  # every chart draws something
        assert re.search(r"<(polyline|path|circle|rect) [^>]*(points|d|cx|height)=", chart), chart[:200]
    title = re.search(r"<h1>(.*?)</h1>", page, flags=re.S)
    assert title is not None and all(NAMES[m] in title.group(1) for m in models)
    assert "ROC curves (held-out rows)" in page
    assert all(f"Calibration: {NAMES[m]}" in page for m in models)
    assert "Validation Brier per epoch" in page
    assert ("Log-loss per tree" in page) == ("gbdt" in models)
    assert "<details><summary>Messages each party sent" in page  # raw message tables folded
    assert "Stability index (PSI): not computed" in page


@pytest.mark.parametrize("models", [("lr",), ("lr", "scorecard"), ("lr", "gbdt"), ("lr", "scorecard", "gbdt")])
def test_every_model_trained_has_its_curves_and_nothing_is_empty(full_run: tuple[Store, str, dict[str, Any]],
                                                                  tmp_path: Path, models: tuple[str, ...]) -> None:
    page, vertical = _render(full_run, models, tmp_path)
    _assert_complete(page, models)
    aucs = {name: m["auc"] for name, m in vertical["comparison"].items() if name in NAMES.values()}
    best = max(aucs, key=lambda k: aucs[k])
    title = re.search(r"<h1>(.*?)</h1>", page, flags=re.S)
    assert title is not None and title.group(1).split(": ", 1)[1].startswith(best)  # the best model first
    assert f"{best} (best)" in page


def test_a_model_without_curves_or_with_a_nan_metric_prints_neither(full_run: tuple[Store, str, dict[str, Any]],
                                                                     tmp_path: Path) -> None:
    def damage(vertical: dict[str, Any]) -> None:
        vertical["comparison"][GBDT_NAME].pop("curves")  # e.g. a run stored before the bank released bands
        vertical["comparison"][GBDT_NAME]["brier"] = float("nan")
        vertical["curves"]["gbdt_training"]["history"] = []

    page, _ = _render(full_run, ("lr", "gbdt"), tmp_path, damage)
    assert "No ROC curve for vertical GBDT" in page and "No training curve for vertical GBDT" in page
    assert "nan" not in re.sub(r"<[^>]+>", " ", page).lower().split() and "No data" not in page


def test_band_counts_give_the_roc_and_calibration() -> None:
    y = [0, 0, 1, 0, 1, 1, 0, 0]
    pd = [0.01, 0.02, 0.9, 0.3, 0.6, 0.8, 0.05, 0.5]
    bands = score_bands(y, pd)  # type: ignore[arg-type]
    assert sum(bands["pos"]) == 3 and sum(bands["neg"]) == 5
    roc = roc_from_bands(bands)
    assert roc is not None and roc[0][-1] == roc[1][-1] == 1.0 and roc[0][0] == roc[1][0] == 0.0
    cal = calibration_from_bands(bands)
    assert cal is not None and sum(cal[2]) == 8 and all(0 <= p <= 1 for p in cal[0] + cal[1])
    assert roc_from_bands(score_bands([0, 0], [0.1, 0.2])) is None  # type: ignore[arg-type]
