"""Horizontal GBDT under `[privacy.gbdt]` (issue 13 item 2): every bank release is charged, to the run's ledger and
to each bank's own, for exactly the releases made; the receipt says what leaves per tree level; edges come from
public bounds; a run that cannot afford a tree stops before it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_horizontal_gbdt_own_data import BANKS, config_toml, write_banks

from sampan.config import load_config
from sampan.core.workflow import RunContext
from sampan.horizontal.capability import HORIZONTAL
from sampan.horizontal.gbdt_privacy import public_edges
from sampan.horizontal.gbdt_workflow import HorizontalGBDTWorkflow
from sampan.privacy import Ledger
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.runtime.receipt import build_receipt
from sampan.runtime.recorder import StoreRecorder
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport

DP = '\n[privacy]\nepsilon = {epsilon}\n\n[privacy.gbdt]\nnoise_multiplier = {z}\n'


class _Counting(InProcessTransport):
    """The in-process transport, counting the requests of each kind per bank."""

    def __init__(self, apps: dict[str, Any]) -> None:
        super().__init__(apps)
        self.sent: Counter[tuple[str, str]] = Counter()

    def exchange(self, messages: Any) -> Any:
        messages = list(messages)
        for m in messages:
            self.sent[(m.recipient, m.kind)] += 1
        return super().exchange(messages)


def _dp_run(tmp_path: Path, epsilon: float = 500.0, z: float = 0.8, extra_dp: str | None = None,
            ) -> tuple[Any, Store, str, _Counting, dict]:
    dp = extra_dp if extra_dp is not None else DP.format(epsilon=epsilon, z=z)
    config = load_config(config_toml(tmp_path, write_banks(tmp_path), dp))
    setups = HORIZONTAL.simulate(config, 3)
    policies = {name: PartyPrivacyPolicy() for name in setups}
    for name, setup in setups.items():
        setup.policy = policies[name]
    transport = _Counting({name: HORIZONTAL.party_app(setup) for name, setup in setups.items()})
    store = Store.open(f"sqlite:///{tmp_path / 'dp.db'}")
    run_id = store.create_run(name="dp", workflow="horizontal", seed=3, config=config.to_dict(), total_rounds=5)
    ctx = RunContext(run_id, 3, config, transport, StoreRecorder(store, run_id))
    result = HorizontalGBDTWorkflow(config).run(ctx)
    return result, store, run_id, transport, policies


def test_dp_run_charges_both_ledgers_for_exactly_the_releases_made(tmp_path: Path) -> None:
    result, store, run_id, transport, policies = _dp_run(tmp_path)
    ledger_json = store.ledger(run_id)
    assert ledger_json is not None
    run_ledger = Ledger.from_json(ledger_json)
    for bank in BANKS:
        hist = transport.sent[(bank, "hgb.hist")]
        assert 5 <= hist <= 5 * 4  # at most max_depth + 1 releases per tree, 5 trees (no early stop under DP)
        notes = Counter("histograms" in e.note for e in run_ledger.events if e.party == bank)
        assert notes[True] == hist and notes[False] == 2  # + the row count and the [n, positives] release
        own = [e for e in policies[bank].ledger(bank).events if e.party == bank]
        assert Counter("histograms" in e.note for e in own) == Counter({True: hist, False: 2})
        assert all(e.noise_multiplier == pytest.approx(0.8) for e in own if "histograms" in e.note)
    assert len(result.models[0].meta["model"]["trees"]) == 5
    assert result.info["privacy"]["parties"][BANKS[0]]["epsilon_spent"] > 0
    assert "release" in result.info["receipt"]["reveals"]["per tree level"]


def test_receipt_lists_every_tree_field_as_charged(tmp_path: Path) -> None:
    from sampan.runtime.runner import start_run

    config = load_config(config_toml(tmp_path, write_banks(tmp_path), DP.format(epsilon=500.0, z=0.8)))
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    finished = start_run(config, store)
    receipt = build_receipt(store, finished.run_id)
    rows = {(r["sender"], r["kind"], r["field"]): r for r in receipt["messages"]}
    assert rows[("party", "hgb.hist", "arrays.*")]["protection"] == "charged"
    assert rows[("party", "hgb.sketch", "meta.n")]["mechanisms"] == "DP1:counts"
    assert "quantiles" not in str(receipt["messages"])  # no quantile of any row leaves under DP
    assert receipt["differential_privacy"] and receipt["noise_multipliers"]["GBDT"] == pytest.approx(0.8)
    assert receipt["parties"][BANKS[0]]["epsilon_spent"] > 0
    store.close()


def test_budget_stop_keeps_the_trees_before_it(tmp_path: Path) -> None:
    result, *_ = _dp_run(tmp_path, epsilon=6.0, z=2.0)
    trees = len(result.models[0].meta["model"]["trees"])
    assert 1 <= trees < 5 and "would exceed the budget" in result.info["budget_stop"]


def test_edges_come_from_public_bounds_only() -> None:
    class Column:
        def __init__(self, name: str, kind: str, bounds: Any = None) -> None:
            self.name, self.kind, self.bounds = name, kind, bounds

    schema = type("S", (), {"features": [Column("age", "int", (20, 29)), Column("flag", "bool"),
                                         Column("income", "float", (0, 100))]})()
    edges = public_edges(["age", "flag", "income", "sector=retail"], 8, {}, schema)
    np.testing.assert_allclose(edges[0], np.linspace(20, 29, 9)[1:-1])  # 10 ages > 8 bins: equal width
    assert list(edges[1]) == [0.5] and list(edges[3]) == [0.5]
    np.testing.assert_allclose(edges[2], np.linspace(0, 100, 9)[1:-1])
    with pytest.raises(ValueError, match="no public range for feature 'debt'"):
        public_edges(["debt"], 8, {}, schema)


def test_a_feature_without_public_bounds_is_a_config_error(tmp_path: Path) -> None:
    text = config_toml(tmp_path, write_banks(tmp_path), DP.format(epsilon=5.0, z=1.0)).read_text()
    path = tmp_path / "unbounded.toml"
    path.write_text(text.replace('{ name = "age", bounds = [0, 100] }', '{ name = "age" }'))
    with pytest.raises(ValueError, match=r"no public range for \['age'\]"):
        load_config(path)


def test_a_feature_subset_per_tree_is_public_and_shrinks_each_release(tmp_path: Path) -> None:
    """`features_per_tree`: each tree's features come from the run seed; the banks release only their bins."""
    from sampan.horizontal.gbdt_privacy import GBDTReleasePlan

    plan = GBDTReleasePlan(Ledger({}), 2.0, 20.0, 4, lambda *_: None, {}, features_per_tree=2, seed=5)
    assert plan.tree_features(0, 3) == plan.tree_features(0, 3) and len(plan.tree_features(0, 3) or []) == 2
    assert plan.released_features(3) == 2 and plan.request(features=[0, 2])["features"] == [0, 2]
    extra = DP.format(epsilon=500.0, z=0.8) + "features_per_tree = 2\n"
    result, *_ = _dp_run(tmp_path, extra_dp=extra)
    used = {t["feature"][n] for t in result.models[0].meta["model"]["trees"] for n, o in enumerate(t["owner"]) if o}
    assert used and len(result.models[0].meta["model"]["trees"]) == 5
