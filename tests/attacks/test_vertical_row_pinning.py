"""Review R12 (R12-1, R12-3): exact aggregates over coordinator-chosen row sets, differenced across setups and runs.

R12-1: vertical GBDT reports the per-tree training and validation log-loss to the coordinator. Only the
training rows were pinned (per run), and every `vgb.setup` could name new validation rows (>= 50, disjoint
from training). With learning_rate ~0 the model is the constant training rate c, so the validation
log-loss gave the exact positive count of the chosen rows: validation sets S + {t} for a fixed 49-row S
read y_t (20/20 labels). R12-3: in-process parties keep their aligned rows and model parts across runs,
while the test rows were fixed per run id: a fresh run id re-fixed them and exact `default_rate` over
S + {t} differenced labels run by run.
Now each party pins one partition of its customers per dataset (`sampan.vertical.rows.RowBook`, by its own
row ids, across runs; persisted by a deployed agent): the first setup fixes the training customers, the
first with validation rows the validation customers (GBDT, secure LR, the bank's baseline), the first
evaluation the test customers; anything else is refused, and evaluations are capped across runs.
The GBDT and run-id tests fail on commit 1064fb2 (they were the xfail(strict) reproductions before the fix).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from sampan.core.transport import PartyError
from sampan.data import make_sme_consortium
from sampan.models.gbdt import GBDTParams
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical.gbdt import train_vertical_gbdt
from sampan.vertical.model import LocalLinearPart, LocalScaler
from sampan.vertical.rows import RowBook
from sampan.vertical.session import Splits, VerticalSession
from sampan.vertical.training import VerticalLRConfig

_CONSTANT = GBDTParams(n_trees=1, max_depth=1, learning_rate=1e-9, min_split_gain=1e12, n_bins=4)


def _session(run_id: str) -> tuple[VerticalSession, Any, dict[str, Any]]:
    tables = {k: v for k, v in make_sme_consortium(1500, seed=9).vertical.items() if k in ("bank", "payments")}
    transport, parties = build_inprocess_vertical(tables)
    s = VerticalSession(transport, label_holder="bank", partners=["payments"], run_id=run_id)
    s.connect()
    s.align()
    return s, transport, parties


def _next_run(transport: Any, s: VerticalSession, run_id: str) -> VerticalSession:
    """A new run id on the same parties (which keep their aligned rows), as a coordinator may start."""
    run = VerticalSession(transport, label_holder="bank", partners=["payments"], run_id=run_id)
    run.connect()
    run.n_aligned = s.n_aligned
    return run


def _rate_from_entropy(h: float) -> float:
    lo, hi = 1e-9, 0.5
    for _ in range(200):
        mid = (lo + hi) / 2
        if -(mid * math.log(mid) + (1 - mid) * math.log(1 - mid)) < h:
            lo = mid
        else:
            hi = mid
    return lo


def _positives(history: dict[str, float]) -> int:
    c = _rate_from_entropy(history["train_logloss"])
    return round((50 * history["val_logloss"] + 50 * math.log(1 - c)) / (math.log(1 - c) - math.log(c)))


def test_gbdt_validation_loss_cannot_difference_validation_sets_within_a_run() -> None:
    s, transport, _ = _session("r12-1")
    T = Splits.random(s.n_aligned or 0, seed=1).train.astype(np.int64)
    pool = np.setdiff1d(np.arange(s.n_aligned or 0), T)
    S, targets = pool[:49], pool[49:69]
    first = train_vertical_gbdt(transport, s.run_id, "bank", ["payments"], T, np.append(S, targets[0]), _CONSTANT)
    assert _positives(first.history[0]) >= 0  # the first validation set is accepted (and pinned)
    for t in targets[1:4]:
        with pytest.raises(PartyError, match="other validation rows"):
            train_vertical_gbdt(transport, s.run_id, "bank", ["payments"], T, np.append(S, t), _CONSTANT)


def test_gbdt_losses_cannot_difference_row_sets_across_runs() -> None:
    s, transport, _ = _session("r12-1b-0")
    T = Splits.random(s.n_aligned or 0, seed=1).train.astype(np.int64)
    pool = np.setdiff1d(np.arange(s.n_aligned or 0), T)
    S = pool[:49]
    train_vertical_gbdt(transport, s.run_id, "bank", ["payments"], T, np.append(S, pool[49]), _CONSTANT)
    run = _next_run(transport, s, "r12-1b-1")
    with pytest.raises(PartyError, match="other validation rows"):  # the validation loss on S + {t'}
        train_vertical_gbdt(transport, run.run_id, "bank", ["payments"], T, np.append(S, pool[50]), _CONSTANT)
    run = _next_run(transport, s, "r12-1b-2")
    with pytest.raises(PartyError, match="other training rows"):  # the training loss (H(rate)) on T + {t}
        train_vertical_gbdt(transport, run.run_id, "bank", ["payments"], np.append(T, pool[60]),
                            np.append(S, pool[49]), _CONSTANT)


def test_secure_lr_and_the_local_baseline_use_the_pinned_validation_rows() -> None:
    s, transport, parties = _session("r12-1c")
    for p in parties.values():
        p.lr.runs.max_instances = 10
    splits = s.splits(seed=1)
    config = VerticalLRConfig(epochs=1, batch_size=256)
    s.train(splits, config)
    other = Splits(splits.train, np.append(splits.val[1:], splits.test[0]), splits.test[1:])
    with pytest.raises(PartyError, match="other validation rows"):
        s.train(other, config)
    with pytest.raises(PartyError, match="other validation rows"):
        s.bank_only(other, config)


def test_a_new_run_id_does_not_reopen_the_test_rows() -> None:
    s, transport, parties = _session("r12-3-0")
    for name, p in parties.items():
        d = p.data.X.shape[1]
        p.loaded_part = LocalLinearPart(name, list(p.data.feature_names), LocalScaler(np.zeros(d), np.ones(d)),
                                        np.zeros(d))
    S = s.splits(seed=1).test  # the bank's own test customers (with both classes among them)
    s.evaluate(S)
    others = np.setdiff1d(np.arange(s.n_aligned or 0), S)
    for k, t in enumerate(others[:3]):
        run = _next_run(transport, s, f"r12-3-{k + 1}")
        with pytest.raises(PartyError, match="other rows than the test rows"):
            run.evaluate(np.append(S[1:], t))


def test_the_row_book_persists_and_caps_evaluations(tmp_path: Any) -> None:
    path = tmp_path / "rows.json"
    book = RowBook("bank", path=path, max_evaluations=2)
    train, test = {str(i) for i in range(100)}, {str(i) for i in range(100, 160)}
    book.pin("vgb.setup", "train", train)
    labels = np.arange(200) % 2
    rows = np.arange(100, 160)
    book.admit_evaluation("m1", rows, test, lambda: labels, test)  # the bank's own test customers
    restarted = RowBook("bank", path=path, max_evaluations=2)  # a restarted agent: same partition, same count
    with pytest.raises(ValueError, match="other training rows"):
        restarted.pin("vgb.setup", "train", train | {"100"})
    with pytest.raises(ValueError, match="test rows"):
        restarted.note_fit({"101"})
    with pytest.raises(ValueError, match="same model"):
        restarted.admit_evaluation("m1", rows, test, lambda: labels)
    restarted.admit_evaluation("m2", rows, test, lambda: labels)
    with pytest.raises(ValueError, match="cap of 2"):
        restarted.admit_evaluation("m3", rows, test, lambda: labels)


@pytest.mark.slow
def test_deployed_agents_keep_the_partition_across_runs(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deployed: each agent persists its row book, so a second run (fresh PSI order, new run id) on the honest
    coordinator's `session.splits` completes, while a coordinator drawing fresh splits is refused."""
    from _deploy_federation import ThreadFederation

    parties = ["bank", "payments"]
    fed = ThreadFederation(tmp_path, vertical=True, n=1500,
                           allow={p: {"partners": [q for q in parties if q != p]} for p in parties})
    try:
        run = {"run": {"name": "vlr", "seed": 3},
               "deploy": {"workflow": "vertical", "dataset": "vertical", "parties": parties, "label_holder": "bank"},
               "vertical": {"epochs": 1, "batch_size": 128}}
        for seed in (3, 4):  # the honest coordinator: the pinned partition, wherever PSI puts it
            done = fed.wait(fed.submit({**run, "run": {"name": "vlr", "seed": seed}}), timeout=120)
            assert done["status"] == "completed", done
        monkeypatch.setattr(VerticalSession, "splits", lambda self, **kw: Splits.random(self.n_aligned or 0, seed=9))
        refused = fed.wait(fed.submit({**run, "run": {"name": "vlr", "seed": 5}}), timeout=120)
        assert refused["status"] == "failed"
        assert "fixed for this dataset" in str(fed.coordinator.store.get_run(refused["run_id"]).error)
    finally:
        fed.close()
