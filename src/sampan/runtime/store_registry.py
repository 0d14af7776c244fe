"""The model registry half of the run store: models as arrays + JSON metadata, lineage and receipts.

A mixin of `sampan.runtime.store.Store` (which supplies the engine, sessions and the audit chain),
split out to keep modules small. Every registration is one transaction with its audit event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sampan.runtime.errors import StoreError
from sampan.runtime.store_schema import (
    ModelRow,
    ModelSummary,
    RegisteredModel,
    RunRow,
    _canonical_sha256,
    _json_safe,
    _pack,
    _unpack,
)


class ModelRegistry:
    """Registry methods of `Store`; needs ``self._session`` and ``self._append_event`` from it."""

    _session: sessionmaker[Session]

    if TYPE_CHECKING:
        def _append_event(self, s: Any, run_id: str, kind: str, detail: Mapping[str, Any]) -> None: ...

    def register_model(self, name: str, run_id: str, arrays: Mapping[str, np.ndarray],
                       meta: Mapping[str, Any], *, parent: Mapping[str, Any] | None = None) -> int:
        """Store a model (arrays + JSON metadata) with its lineage: run, config hash, arrays hash, parent.

        `parent` names the model this one was trained from ({"name", "version"}), if any."""
        blob = _pack(arrays, {})
        with self._session.begin() as s:
            latest = s.scalars(select(ModelRow.version).where(ModelRow.name == name)
                               .order_by(ModelRow.version.desc()).limit(1)).first()
            version = (latest or 0) + 1
            run = s.get(RunRow, run_id)
            lineage = {
                "run_id": run_id,
                "run_name": run.name if run is not None else None,
                "workflow": run.workflow if run is not None else None,
                "config_sha256": _canonical_sha256(run.config) if run is not None else None,
                "arrays_sha256": hashlib.sha256(blob).hexdigest(),
                "parent": dict(parent) if parent else None,
                "previous_version": latest,
            }
            s.add(ModelRow(name=name, version=version, run_id=run_id, meta=dict(meta), arrays=blob, lineage=lineage))
            self._append_event(s, run_id, "model_registered", {"name": name, "version": version, **{
                k: lineage[k] for k in ("config_sha256", "arrays_sha256", "parent")}})
        return version

    def attach_receipt(self, name: str, version: int, receipt: Mapping[str, Any]) -> None:
        """Keep the privacy receipt of the run that made a model with the model (and log its hash)."""
        with self._session.begin() as s:
            row = s.scalars(select(ModelRow).where(ModelRow.name == name, ModelRow.version == version)).first()
            if row is None:
                raise StoreError(f"no model {name!r} version {version}")
            row.receipt = _json_safe(dict(receipt))
            self._append_event(s, row.run_id, "model_receipt_attached", {
                "name": name, "version": version, "receipt_sha256": _canonical_sha256(row.receipt)})

    def _registered(self, row: ModelRow) -> RegisteredModel:
        arrays, _ = _unpack(row.arrays)
        return RegisteredModel(row.name, row.version, row.run_id, dict(row.meta), arrays, dict(row.lineage or {}),
                               dict(row.receipt) if row.receipt is not None else None, row.created_at)

    def get_model(self, name: str, version: int | None = None) -> RegisteredModel:
        with self._session() as s:
            query = select(ModelRow).where(ModelRow.name == name)
            query = query.where(ModelRow.version == version) if version else query.order_by(ModelRow.version.desc())
            row = s.scalars(query.limit(1)).first()
            if row is None:
                raise StoreError(f"no model {name!r}" + (f" version {version}" if version else ""))
            return self._registered(row)

    def models_for_run(self, run_id: str) -> Iterator[RegisteredModel]:
        with self._session() as s:
            for row in s.scalars(select(ModelRow).where(ModelRow.run_id == run_id).order_by(ModelRow.id)):
                yield self._registered(row)

    def list_models(self, name: str | None = None, limit: int = 200) -> list[ModelSummary]:
        """Registry entries, newest first, without loading their arrays."""
        m = ModelRow.__table__
        query = select(m.c.name, m.c.version, m.c.run_id, m.c.created_at, m.c.lineage, m.c.receipt.is_not(None))
        if name is not None:
            query = query.where(m.c.name == name)
        with self._session() as s:
            rows = s.execute(query.order_by(m.c.id.desc()).limit(limit)).all()
        return [ModelSummary(r[0], r[1], r[2], r[3], dict(r[4] or {}), bool(r[5])) for r in rows]
