"""`StoreRecorder`: the `sampan.core.RunRecorder` a workflow writes through, over the run store.

Workflows never see a `Store` (they sit below the runtime layer); the runner hands them this
narrow, run-bound view instead. Every method is one store transaction, so each is durable when it
returns: a checkpoint is round + state + metrics + audit entries at once, and a ledger charge is
persisted with its `budget_charged` entry before the release it pays for leaves (write-ahead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sampan.core.workflow import Checkpoint, ModelArtifact
from sampan.runtime.store import Store

__all__ = ["StoreRecorder"]


class StoreRecorder:
    """One run's `RunRecorder` over a `Store` (SQLite or any SQLAlchemy URL)."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def checkpoint(self, round_number: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
                   metrics: Mapping[str, Any], seconds: float,
                   events: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> None:
        """Round ``round_number``'s state, metrics and audit ``events`` (e.g. traffic) in one transaction."""
        self.store.save_round(self.run_id, round_number, state_arrays=arrays, state_meta=meta,
                              metrics=metrics, seconds=seconds, events=events)

    def last_checkpoint(self) -> Checkpoint | None:
        return self.store.latest_checkpoint(self.run_id)

    def event(self, kind: str, detail: Mapping[str, Any]) -> None:
        self.store.log_event(self.run_id, kind, detail)

    def info(self, key: str, value: Any) -> None:
        self.store.record_info(self.run_id, key, value)

    def stored_info(self) -> dict[str, Any]:
        return dict(self.store.get_run(self.run_id).info or {})

    def charge(self, ledger_json: str, detail: Mapping[str, Any]) -> None:
        self.store.charge_ledger(self.run_id, ledger_json, detail)

    def ledger(self) -> str | None:
        return self.store.ledger(self.run_id)

    def registered_model(self, name: str, version: int | None = None) -> ModelArtifact:
        """The coordinator's own registered model; `StoreError` names the model (and version) when absent."""
        record = self.store.get_model(name, version)
        return ModelArtifact(record.name, dict(record.arrays), dict(record.meta))
