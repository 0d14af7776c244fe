"""Fairness by group on a small 3-bank run: the federated group metrics equal the pooled computation, small groups
are suppressed, and under DP the release is noised and charged to both ledgers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sampan.config import parse_config
from sampan.core.workflow import RunContext
from sampan.data import PartyData
from sampan.horizontal.workflow import HorizontalWorkflow
from sampan.metrics import ScoreHistogram
from sampan.metrics.groups import group_table
from sampan.models import model_from_config
from sampan.privacy import Ledger
from sampan.privacy.group_release_mod import withheld_levels
from sampan.runtime.federation import simulated_party_apps
from sampan.runtime.recorder import StoreRecorder
from sampan.runtime.runner import hook_progress
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport

SECTORS = ("retail", "trade", "food", "rare")
NAMES = [*(f"sector={s}" for s in SECTORS), "age", "x"]
SCHEMA = {"id": "id", "label": "y", "features": [
    {"name": "sector", "kind": "category", "categories": list(SECTORS)}, "age", "x"]}
GROUPS = {"groups": ["sector", "age"], "group_bands": {"age": [3.0, 8.0]}, "min_group_count": 10}


def _data(name: str, n: int, rng: np.random.Generator, rare: bool) -> PartyData:
    sector = rng.integers(0, 3, n)
    if rare:
        sector[0] = 3  # one record of a "rare" sector in this bank only
    onehot = np.eye(4)[sector]
    age, x = rng.uniform(0, 15, n), rng.normal(size=n)
    logit = 1.2 * x - 0.1 * age + 0.8 * (sector == 1) - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return PartyData(name, np.array([f"{name}-{i}" for i in range(n)], dtype=object),
                     np.column_stack([onehot, age, x]), y, NAMES)


def _banks() -> dict[str, tuple[PartyData, PartyData]]:
    rng = np.random.default_rng(3)
    return {f"bank_{i}": (_data(f"bank_{i}", 150, rng, False), _data(f"bank_{i}", 80 + 20 * i, rng, i == 0))
            for i in range(3)}


def _run(tmp_path: Path, extra: dict[str, Any]) -> tuple[Any, Store, str, dict[str, Any], dict[str, Any]]:
    banks = _banks()
    config = parse_config({"run": {"name": "fair", "rounds": 2, "seed": 4}, "schema": SCHEMA,
                           "parties": [{"name": "placeholder", "path": "unused.csv"}],
                           "training": {"learning_rate": 0.2, "batch_size": 16}, "evaluation": GROUPS, **extra})
    apps = simulated_party_apps("horizontal", banks, job={"workflow": "horizontal", "groups": True})
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    run_id = store.create_run(name="fair", workflow="horizontal", seed=4, config=config.to_dict(), total_rounds=2)
    ctx = RunContext(run_id=run_id, seed=4, config=config, transport=InProcessTransport(apps),
                     recorder=StoreRecorder(store, run_id), progress=hook_progress(None))
    result = HorizontalWorkflow(config).run(ctx)
    return result.outcome, store, run_id, banks, result.info


def test_group_metrics_equal_the_pooled_computation(tmp_path: Path) -> None:
    outcome, store, run_id, banks, info = _run(tmp_path, {})
    groups = info["groups"]
    model = model_from_config(outcome.model.config())
    pooled: dict[str, list[tuple[str, ScoreHistogram]]] = {"sector": [], "age": []}
    tests = [test for _, test in banks.values()]
    X = np.vstack([t.X for t in tests])
    y = np.concatenate([t.y for t in tests])
    p = model.predict_proba(outcome.params, (X - outcome.scaler["mean"]) / outcome.scaler["scale"])
    bank = np.concatenate([np.full(len(t), i) for i, t in enumerate(tests)])
    age = X[:, 4]
    levels = {"sector": [(sector, X[:, k] == 1) for k, sector in enumerate(SECTORS)],
              "age": [("< 3", age < 3), ("[3, 8)", (age >= 3) & (age < 8)), (">= 8", age >= 8)]}
    for column, members in levels.items():
        # each bank withholds its small levels and, per column, more until what it hides is 0 or >= 10 rows
        held = np.array([withheld_levels(np.array([int((m & (bank == b)).sum()) for _, m in members]), 0)
                         for b in range(len(tests))])
        for k, (label, member) in enumerate(members):
            shown = member & ~held[bank, k]
            pooled[column].append((label, ScoreHistogram.from_scores(y[shown], p[shown], 100) if shown.any()
                                   else ScoreHistogram.empty(100)))
    expected = [r.to_dict() for r in group_table(pooled, groups["threshold"], 10)]
    assert groups["rows"] == expected
    assert groups["threshold"] == info["decision"]["threshold"]
    rare = next(r for r in groups["rows"] if r["level"] == "rare")
    assert rare["suppressed"] and rare["count"] is None  # one record: withheld by its bank, suppressed
    assert "sector rare" in groups["note"]
    assert sum(r["count"] or 0 for r in groups["rows"] if r["column"] == "sector") < len(y) - 1  # secondary
    assert set(groups["disparity"]) == {"sector", "age"} and groups["disparity"]["sector"]["groups"] == 3
    assert not groups["dp"]


def test_under_dp_the_group_release_is_noised_and_charged(tmp_path: Path) -> None:
    privacy = {"privacy": {"epsilon": 50.0, "group_noise_multiplier": 2.0, "dp2": {"noise_multiplier": 1.0}},
               "data": {"standardize": False}, "training": {"learning_rate": 0.2, "batch_size": 16,
                                                        "class_weight": {"0": 1.0, "1": 3.0}}}
    _, store, run_id, _, info = _run(tmp_path, privacy)
    assert info["groups"]["dp"] and len(info["groups"]["rows"]) == 7
    ledger_json = StoreRecorder(store, run_id).ledger()
    assert ledger_json is not None
    charges = [e for e in Ledger.from_json(ledger_json).events if e.note == "group evaluation histograms"]
    assert sorted(e.party for e in charges) == ["bank_0", "bank_1", "bank_2"]  # one charge per bank, write-ahead
    assert all(e.noise_multiplier == 2.0 for e in charges)  # privacy.group_noise_multiplier


def test_config_refuses_groups_it_cannot_compute() -> None:
    base = {"schema": SCHEMA, "parties": [{"name": "a", "path": "a.csv"}]}
    with pytest.raises(ValueError, match="group_bands"):
        parse_config({**base, "evaluation": {"groups": ["age"]}})
    with pytest.raises(ValueError, match="not a \\[schema\\] feature"):
        parse_config({**base, "evaluation": {"groups": ["district"]}})
    with pytest.raises(ValueError, match="secure aggregation"):
        parse_config({**base, "evaluation": {"groups": ["sector"]}, "secure_aggregation": {}})


def test_the_report_and_receipt_show_the_group_release(tmp_path: Path) -> None:
    from sampan.report.credit_tables import credit_sections
    from sampan.runtime.receipt import _protection
    from sampan.wire.catalogue import Setup, horizontal_catalogue

    _, _, _, _, info = _run(tmp_path, {})
    sections = {s.title: s.html for s in credit_sections(info)}
    assert {"Decision threshold", "Score bands (deciles)", "Fairness by group"} <= set(sections)
    html = sections["Fairness by group"]
    assert "suppressed" in html and "nan" not in html and "max/min approval" in html
    assert "revealed" in _protection("group_evaluation", None, {})
    assert "charged" in _protection("group_evaluation", {"group_noise_multiplier": 2.0}, {})
    catalogue = horizontal_catalogue(Setup.from_config({"evaluation": GROUPS}))
    assert catalogue["party:group_evaluation"].field("arrays.pos").protection == "visible"
    dp = {"evaluation": GROUPS, "privacy": {"dp2": {"noise_multiplier": 1.0}}}
    private = horizontal_catalogue(Setup.from_config(dp))
    assert private["party:group_evaluation"].field("arrays.pos").mechanisms == ("DP1:groups",)
