"""Review (issue 13) of "each bank alone" in the run (`local_comparison.compare_banks`, `HorizontalWorkflow.run`).

R13-BA-3: the comparison is the run's last exchange, after training and the final evaluation, and one bank's
refusal or error fails the WHOLE run (`transport.exchange` raises `PartyError`; `compare_banks` catches only
the run ledger's `BudgetExceeded`). Any bank can cause it: one with no holdout rows (its evaluation passes, the
comparison raises), one whose own budget cannot afford the extra DP2 release, one whose policy refuses. The
trained model is then lost and, under DP, every round's budget (and the run ledger's write-ahead charge for the
local-only trainings) is spent for nothing. A reporting extra should report that bank as unavailable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _horizontal_run import run_workflow

from sampan.config import parse_config
from sampan.core.capability import PartySetup
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL
from sampan.report.bank_alone import bank_alone_rows
from sampan.runtime.store import Store
from sampan.transport.inprocess import InProcessTransport

FEATURES = ["x1", "x2", "x3"]


def _data(name: str, n: int, rng: np.random.Generator) -> PartyData:
    X = rng.normal(size=(n, len(FEATURES)))
    y = (X @ np.array([1.5, -1.0, 0.5]) + rng.normal(size=n) > 0).astype(np.int8)
    return PartyData(party=name, ids=np.array([f"{name}-{i}" for i in range(n)], dtype=object), X=X, y=y,
                     feature_names=FEATURES)


def test_one_bank_without_a_holdout_does_not_fail_the_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tables = {f"bank_{i}": (_data(f"bank_{i}", 80, rng), _data(f"bank_{i}", 30, rng)) for i in range(3)}
    train, test = tables["bank_2"]
    tables["bank_2"] = (train, test.subset(np.zeros(len(test), dtype=bool)))  # a bank with no holdout rows
    job = {"workflow": "horizontal", "model": "logistic", "bank_alone": True}
    apps = {name: HORIZONTAL.party_app(PartySetup(name, data, dict(job))) for name, data in tables.items()}
    config = parse_config({"run": {"name": "r13", "rounds": 2, "seed": 7},
                           "schema": {"id": "id", "label": "y", "features": FEATURES},
                           "parties": [{"name": "placeholder", "path": "unused.csv"}],
                           "training": {"learning_rate": 0.2, "batch_size": 16}, "bank_alone": {"epochs": 2}})
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    run_id = store.create_run(name="r13", workflow="horizontal", seed=7, config=config.to_dict(), total_rounds=2)
    outcome = run_workflow(InProcessTransport(apps), store, run_id, config, 7)  # today: PartyError from bank_2
    assert outcome is not None
    summary = next(e.detail for e in store.events(run_id) if e.kind == "bank_alone")
    assert summary["banks"]["bank_2"]["unavailable"].startswith("not available for bank_2")
    assert summary["banks"]["bank_0"]["local_auc"] is not None  # the others' figures are there
    row = dict((r[0], r) for r in bank_alone_rows(summary))["bank_2"]
    assert "not available for bank_2" in row[2]
