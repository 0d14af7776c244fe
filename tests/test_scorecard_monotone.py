"""Scorecards a validator accepts: WOE monotone in bin order, points never rising with risk, or a flag per feature."""

from __future__ import annotations

from typing import Any

import numpy as np

from sampan.models.scorecard import ScoreScaling, WoeTable, is_monotone, monotone_bins, risk_direction, woe_iv
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store
from sampan.vertical.job import VerticalJob
from sampan.vertical.model import LocalLinearPart, LocalScaler
from sampan.vertical.scorecard_rules import apply_scorecard_rules
from sampan.vertical.training import VerticalLRConfig


def _coarse_woe(events: np.ndarray, totals: np.ndarray, **kw: Any) -> np.ndarray:
    mapping = monotone_bins(events, totals, **kw)
    return woe_iv(np.bincount(mapping, weights=events), np.bincount(mapping, weights=totals))[0]


def test_bins_merge_until_woe_is_monotone_in_the_risk_direction() -> None:
    rng = np.random.default_rng(3)
    for _ in range(40):
        totals = rng.integers(20, 400, 20).astype(float)
        trend = np.linspace(0.02, 0.3, 20) * rng.choice([-1, 1]) % 0.32 + 0.01
        events = np.minimum(rng.poisson(totals * trend * rng.uniform(0.3, 1.7, 20)), totals).astype(float)
        woe = _coarse_woe(events, totals, max_bins=6)
        assert is_monotone(woe), woe
        direction = risk_direction(events, totals)
        if direction and len(woe) > 1:  # risk rising along the bins: WOE (higher = safer) falls
            assert np.sign(woe[-1] - woe[0]) == -direction


def test_smoothing_cannot_reverse_a_small_safe_bin() -> None:
    """0/10 then 1/100: the event rate rises, but smoothed WOE would rank the empty bin riskier; merged."""
    events, totals = np.array([0.0, 1.0, 30.0]), np.array([10.0, 100.0, 100.0])
    woe = _coarse_woe(events, totals, max_bins=6, min_share=0.0)
    assert is_monotone(woe) and np.all(np.diff(woe) <= 0)


def test_monotone_off_keeps_a_reversal() -> None:
    events, totals = np.array([5.0, 40.0, 10.0, 50.0]), np.array([100.0, 100.0, 100.0, 100.0])
    assert not is_monotone(_coarse_woe(events, totals, max_bins=6, min_share=0.0, monotone=False))
    assert is_monotone(_coarse_woe(events, totals, max_bins=6, min_share=0.0))


def _part(weights: list[float], woe: list[list[float]]) -> tuple[LocalLinearPart, list[WoeTable]]:
    tables = [WoeTable(f"f{j}", np.array([0.0, 1.0]), np.array([0, 1, 2]), np.array(w), 0.1)
              for j, w in enumerate(woe)]
    scaler = LocalScaler(np.zeros(len(tables)), np.ones(len(tables)))
    part = LocalLinearPart("bank", [t.feature for t in tables], scaler, np.array(weights), woe=tables,
                           columns=list(range(len(tables))))
    return part, tables


def test_a_wrong_signed_weight_is_zeroed_or_flagged() -> None:
    part, tables = _part([-0.5, 0.7], [[0.8, 0.1, -0.6], [0.5, -0.2, 0.3]])
    fixed, flags = apply_scorecard_rules(part.weights, part.scaler.scale, tables, monotone=True)
    assert fixed.tolist() == [-0.5, 0.0] and flags["f1"]["zeroed"] and not flags["f0"]["flag"]
    kept, flags = apply_scorecard_rules(part.weights, part.scaler.scale, tables, monotone=False)
    assert kept.tolist() == [-0.5, 0.7]
    assert "riskier bins get more points" in flags["f1"]["flag"] and "not monotone" in flags["f1"]["flag"]
    part.meta["scorecard_flags"] = flags
    rows = part.scorecard_rows(ScoreScaling(), label_holder=True)
    assert {r["feature"]: r["flag"] for r in rows if r["feature"] == "f1"}["f1"]  # the flag travels in each row


def _points_follow_risk(rows: list[dict[str, Any]]) -> dict[tuple[str, str], bool]:
    """Per feature: points never fall when WOE (safety) rises, i.e. never rise with risk."""
    by: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in rows:
        if r["woe"] is not None:
            by.setdefault((r["party"], r["feature"]), []).append((float(r["woe"]), float(r["points"])))
    return {k: all(b[1] >= a[1] - 1e-9 for a, b in zip(sorted(v), sorted(v)[1:], strict=False)) for k, v in by.items()}


def test_every_scorecard_feature_is_safer_higher_or_flagged() -> None:
    """A run (monotone on, the default): every feature monotone and safer-higher; flags with it off are unit-tested
    above (and measured on Taiwan in bench/vertical_quality_bench.py)."""
    job = VerticalJob(name="card", label_holder="bank", partners=("payments", "delivery"), models=("lr", "scorecard"),
                      lr=VerticalLRConfig(epochs=2), seed=5,
                      source={"kind": "consortium", "n_smes": 4000, "seed": 4})
    store = Store.open("sqlite://")
    finished = start_run(job, store)
    rows = finished.result.outcome["scorecard"]
    cards = [m for m in store.models_for_run(finished.run_id) if "-scorecard:" in m.name]
    assert len(cards) == 3 and all(set(m.meta["scorecard_flags"]) == {t["feature"] for t in m.meta["woe"]}
                                   for m in cards)  # the model metadata carries each feature's flags
    follows = _points_follow_risk(rows)
    flagged = {(r["party"], r["feature"]) for r in rows if r.get("flag")}
    assert follows and all(ok or key in flagged for key, ok in follows.items())
    woe_by: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r["woe"] is not None:
            woe_by.setdefault((r["party"], r["feature"]), []).append(r["woe"])
    # monotone bins, and every wrong sign zeroed: nothing left to flag but the zeroing itself
    assert all(follows.values()) and all(is_monotone(np.array(w)) for w in woe_by.values())
