"""A run store with a bit of everything (run, rounds, checkpoints, ledger, audit entries, a model) and a table of a
layer above (as the console's would be): shared by tests/test_backup.py and tests/attacks/test_backup_forgery.py."""

from __future__ import annotations

import json

import numpy as np
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine

from sampan.runtime.store import Store


def fill(url: str) -> str:
    """A store with a run, rounds, a checkpoint, a ledger, audit entries, a model, plus a foreign table."""
    store = Store.open(url)
    try:
        run_id = store.create_run(name="fedavg", workflow="horizontal", seed=7, config={"run": {"rounds": 2}},
                                  total_rounds=2)
        for rnd in (1, 2):
            store.save_round(run_id, rnd, state_arrays={"w": np.arange(4, dtype=np.float64) * rnd},
                             state_meta={"round": rnd}, metrics={"auc": 0.7 + rnd / 100}, seconds=0.5,
                             events=[("traffic", {"bytes": 100 * rnd})])
        store.charge_ledger(run_id, json.dumps({"bank_a": {"dp2": 0.5}}), {"party": "bank_a", "epsilon": 0.5})
        store.register_model("sme-default", run_id, {"coef": np.array([[0.25, -1.5]], dtype=np.float32)},
                             {"kind": "logistic"})
        store.log_event(run_id, "approved", {"by": "bank_b", "note": 'quote " and ] bracket'})
    finally:
        store.close()
    # a table of a layer above (the console's), unknown to the runtime: found by reflection
    engine = create_engine(url)
    meta = MetaData()
    users = Table("console_users_fixture", meta, Column("id", Integer, primary_key=True),
                  Column("email", String(200), nullable=False))
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(users.insert(), [{"id": 1, "email": "ops@bank-a.hk"}, {"id": 2, "email": "risk@bank-b.hk"}])
    engine.dispose()
    return run_id
