"""Run store on SQLite and the real PostgreSQL server: runs, atomic rounds, audit chain, registry."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import update

from sampan.runtime.store import KEEP_CHECKPOINTS, EventRow, Store, StoreError


def test_run_lifecycle_and_checkpoints(store: Store) -> None:
    run_id = store.create_run(name="r", workflow="horizontal", seed=2**61 + 5, config={"a": 1}, total_rounds=5)
    for rnd in range(5):
        store.save_round(run_id, rnd, state_arrays={"params": np.full(3, float(rnd))}, state_meta={"round": rnd},
                         metrics={"train_loss": 1.0 / (rnd + 1)}, seconds=0.1)
    ckpt = store.latest_checkpoint(run_id)
    assert ckpt is not None and ckpt.round == 4 and ckpt.meta == {"round": 4}
    np.testing.assert_array_equal(ckpt.arrays["params"], np.full(3, 4.0))
    assert [r.round for r in store.rounds(run_id)] == [1, 2, 3, 4]
    run = store.get_run(run_id)
    assert run.current_round == 4 and run.seed == 2**61 + 5
    store.set_status(run_id, "completed", info={"final_metrics": {"auc": 0.8}})
    assert store.get_run(run_id).info["final_metrics"]["auc"] == 0.8
    assert store.list_runs()[0].run_id == run_id


def test_old_checkpoints_are_pruned(store: Store) -> None:
    from sqlalchemy import select

    from sampan.runtime.store import CheckpointRow

    run_id = store.create_run(name="r", workflow="h", seed=1, config={}, total_rounds=9)
    for rnd in range(9):
        store.save_round(run_id, rnd, state_arrays={"p": np.zeros(2)}, state_meta={}, metrics={}, seconds=0)
    with store._session() as s:
        kept = sorted(s.scalars(select(CheckpointRow.round).where(CheckpointRow.run_id == run_id)))
    assert kept == list(range(9 - KEEP_CHECKPOINTS, 9))


def test_audit_chain_detects_tampering(store: Store) -> None:
    run_id = store.create_run(name="r", workflow="h", seed=1, config={}, total_rounds=1)
    store.log_event(run_id, "note", {"x": 1})
    store.log_event(run_id, "note", {"x": 2})
    assert store.verify_events(run_id)
    with store._session.begin() as s:
        first_note = [e for e in s.query(EventRow).filter_by(run_id=run_id, kind="note")][0]
        s.execute(update(EventRow).where(EventRow.id == first_note.id).values(detail={"x": 99}))
    assert not store.verify_events(run_id)


def test_model_registry_versions(store: Store) -> None:
    run_id = store.create_run(name="r", workflow="h", seed=1, config={}, total_rounds=1)
    v1 = store.register_model("pd-model", run_id, {"params": np.arange(3.0)}, {"kind": "logistic"})
    v2 = store.register_model("pd-model", run_id, {"params": np.arange(3.0) + 1}, {"kind": "logistic"})
    assert (v1, v2) == (1, 2)
    latest = store.get_model("pd-model")
    assert latest.version == 2 and latest.meta == {"kind": "logistic"}
    np.testing.assert_array_equal(store.get_model("pd-model", 1).arrays["params"], np.arange(3.0))
    with pytest.raises(StoreError, match="no model 'other'"):
        store.get_model("other")


def test_unknown_run_and_bad_url_are_clear(sqlite_url: str) -> None:
    store = Store.open(sqlite_url)
    with pytest.raises(StoreError, match="no run 'nope'"):
        store.get_run("nope")
    with pytest.raises(StoreError, match="cannot open run store"):
        Store.open("notadialect://x")


def test_store_recorder_is_the_workflows_durable_view_of_one_run(store: Store) -> None:
    """Everything a workflow records through `StoreRecorder` lands in the store, bound to its run."""
    from sampan.core import Checkpoint, RunRecorder
    from sampan.runtime.recorder import StoreRecorder

    run_id = store.create_run(name="r", workflow="toy", seed=1, config={}, total_rounds=2)
    other = store.create_run(name="o", workflow="toy", seed=1, config={}, total_rounds=2)
    recorder: RunRecorder = StoreRecorder(store, run_id)
    assert recorder.last_checkpoint() is None and recorder.ledger() is None
    recorder.checkpoint(1, {"w": np.ones(2)}, {"stage": "a"}, {"loss": 0.5}, 0.1,
                        events=[("traffic", {"round": 1, "by_party": []})])
    last = recorder.last_checkpoint()
    assert isinstance(last, Checkpoint) and last.round == 1 and last.meta == {"stage": "a"}
    recorder.charge('{"events": []}', {"round": 1, "charges": []})
    recorder.event("stage_done", {"stage": "a"})
    recorder.info("summary", {"n": 3})
    assert recorder.ledger() == '{"events": []}' and store.ledger(other) is None
    assert recorder.stored_info() == {"summary": {"n": 3}}
    kinds = [e.kind for e in store.events(run_id)]
    assert kinds == ["run_created", "traffic", "round_saved", "budget_charged", "stage_done", "summary_recorded"]
    assert [r.metrics for r in store.rounds(run_id)] == [{"loss": 0.5}] and store.verify_events(run_id)
    assert [e.kind for e in store.events(other)] == ["run_created"]


def test_store_split_keeps_every_old_name_importable() -> None:
    """`sampan.runtime.store` re-exports what moved to store_schema / store_registry."""
    import sampan.runtime.store as store_module

    for name in ("Store", "StoreError", "DEFAULT_STORE_URL", "KEEP_CHECKPOINTS", "RunRow", "CheckpointRow", "EventRow",
                 "AuditHeadRow", "AuditKeyRow", "ModelRow", "RegisteredModel", "ModelSummary", "Checkpoint",
                 "AuditSigner", "load_public_key", "_canonical_sha256", "_event_hash", "new_run_id"):
        assert hasattr(store_module, name), name
