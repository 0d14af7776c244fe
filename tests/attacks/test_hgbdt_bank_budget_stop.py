"""R13-HGB-2: a bank's own budget runs out mid-tree; the horizontal GBDT run must keep the trees already paid for.

The budget stop (`GBDTReleasePlan.tree_fits`) reads the run's ledger only; a bank charges its own ledger
(`sampan.privacy.gbdt_dp`), which in a deployed agent is shared by all its runs ("one ledger for all its runs").
When the bank's remaining budget was below the run's plan ('auto' noise fits the run's epsilon), the bank refused
a histogram release in the middle of a tree and the whole run failed, discarding the finished trees, although the
docs promise that the model keeps the trees before a tree that does not fit. Now the bank's refusal names its own
budget (`BankBudgetRefused`) and the coordinator stops there: the model keeps the finished trees, and the run
records why (a `budget_stop` event and receipt line).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sampan.config import parse_config
from sampan.core.capability import PartySetup
from sampan.core.workflow import RunContext
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL, gbdt_job
from sampan.horizontal.gbdt_workflow import HorizontalGBDTWorkflow
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.runtime.recorder import StoreRecorder
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport

FEATURES = ["x1", "x2", "x3"]
PARTIES = ("bank_0", "bank_1")


def _data(name: str, n: int, rng: np.random.Generator) -> PartyData:
    X = rng.normal(size=(n, 3))
    y = (rng.random(n) < 0.4).astype(np.int8)
    return PartyData(party=name, ids=np.array([f"{name}-{i}" for i in range(n)], dtype=object), X=X, y=y,
                     feature_names=FEATURES)


def test_a_bank_with_less_budget_left_than_the_run_budget_stops_at_a_tree_boundary(tmp_path: Path) -> None:
    config = parse_config({
        "run": {"name": "b", "seed": 7},
        "schema": {"id": "id", "label": "y", "features": [{"name": f, "bounds": [-4, 4]} for f in FEATURES]},
        "parties": [{"name": "placeholder", "path": "unused.csv"}],
        "model": {"kind": "gbdt", "n_trees": 6, "max_depth": 2, "n_bins": 8},
        "privacy": {"epsilon": 8.0, "gbdt": {"noise_multiplier": "auto"}}})
    rng = np.random.default_rng(1)
    data = {p: (_data(p, 100, rng), _data(p, 20, rng)) for p in PARTIES}
    job = {"workflow": "horizontal", "model": "gbdt", "gbdt": gbdt_job(config)}
    policies = {p: PartyPrivacyPolicy(epsilon=3.0) for p in PARTIES}  # e.g. what earlier runs left of its budget
    transport = InProcessTransport({p: HORIZONTAL.party_app(PartySetup(p, data[p], job, policy=policies[p]))
                                    for p in PARTIES})
    store = Store.open(f"sqlite:///{tmp_path / 'run.db'}")
    run_id = store.create_run(name="b", workflow="horizontal", seed=7, config=config.to_dict(), total_rounds=6)
    try:
        result = HorizontalGBDTWorkflow(config).run(RunContext(run_id, 7, config, transport,
                                                               StoreRecorder(store, run_id)))
    finally:
        store.close()
    assert 1 <= result.info["trees"] < 6  # a budget stop at a tree boundary keeps the paid-for trees
    assert "bank_0" in result.info["budget_stop"] and "own budget" in result.info["budget_stop"]
