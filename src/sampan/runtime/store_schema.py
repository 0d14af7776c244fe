"""The run store's tables, prepared statements and codecs (no behaviour: `sampan.runtime.store` has it).

Kept apart from the `Store` class so each stays small; everything here is re-exported by
`sampan.runtime.store`, the module importers use. Arrays are packed with the wire codec (dtype +
shape + little-endian bytes) and metadata kept as JSON: no pickle at rest.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    bindparam,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sampan.core.workflow import Checkpoint  # noqa: F401  (the store's checkpoints are the contract's)
from sampan.runtime.audit_chain import _canonical
from sampan.wire import Message, decode, encode

DEFAULT_STORE_URL = "sqlite:///sampan-runs/sampan.db"
KEEP_CHECKPOINTS = 2  # older round checkpoints are pruned; metrics keep the full history


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    __tablename__ = "sampan_runs"
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    workflow: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20))
    seed: Mapped[int] = mapped_column(BigInteger)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    current_round: Mapped[int] = mapped_column(Integer, default=0)
    total_rounds: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CheckpointRow(Base):
    __tablename__ = "sampan_checkpoints"
    run_id: Mapped[str] = mapped_column(ForeignKey("sampan_runs.run_id"), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RoundRow(Base):
    __tablename__ = "sampan_rounds"
    run_id: Mapped[str] = mapped_column(ForeignKey("sampan_runs.run_id"), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    seconds: Mapped[float] = mapped_column()
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)


class EventRow(Base):
    """Append-only audit trail; each row's hash covers the previous one, so edits are detectable."""

    __tablename__ = "sampan_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    kind: Mapped[str] = mapped_column(String(50))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int | None] = mapped_column(Integer, nullable=True)  # position in the run's chain (1-based)
    signature: Mapped[str | None] = mapped_column(String(128), nullable=True)  # Ed25519 over the hash, hex
    key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditHeadRow(Base):
    """The last entry of each run's chain, signed: truncating the chain no longer goes unnoticed."""

    __tablename__ = "sampan_audit_heads"
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(64))


class AuditKeyRow(Base):
    """Public keys that have signed entries here (verification pins its own copy when it has one)."""

    __tablename__ = "sampan_audit_keys"
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LedgerRow(Base):
    """A run's privacy ledger, written ahead of every charged release (so a crash never makes one free)."""

    __tablename__ = "sampan_ledgers"
    run_id: Mapped[str] = mapped_column(ForeignKey("sampan_runs.run_id"), primary_key=True)
    ledger: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelRow(Base):
    __tablename__ = "sampan_models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    arrays: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    lineage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    receipt: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


# Columns added after the first release: created on old stores by `_migrate` (all nullable).
_ADDED_COLUMNS = {
    "sampan_events": {"seq": "INTEGER", "signature": "VARCHAR(128)", "key_id": "VARCHAR(64)"},
    "sampan_models": {"lineage": "JSON", "receipt": "JSON"},
}

_runs, _checkpoints, _rounds, _events = (cast(Table, RunRow.__table__), cast(Table, CheckpointRow.__table__),
                                         cast(Table, RoundRow.__table__), cast(Table, EventRow.__table__))
_heads = cast(Table, AuditHeadRow.__table__)
_UPDATE_PROGRESS = (update(_runs).where(_runs.c.run_id == bindparam("rid"))
                    .values(current_round=bindparam("rnd"), updated_at=bindparam("now")))
_INSERT_CHECKPOINT = insert(_checkpoints)
_PRUNE_CHECKPOINTS = delete(_checkpoints).where(_checkpoints.c.run_id == bindparam("rid"),
                                                _checkpoints.c.round <= bindparam("upto"))
_INSERT_ROUND = insert(_rounds)
_INSERT_EVENT = insert(_events)
_LAST_EVENT_HASH = (select(_events.c.hash).where(_events.c.run_id == bindparam("rid"))
                    .order_by(_events.c.id.desc()).limit(1))
_COUNT_EVENTS = select(func.count()).select_from(_events).where(_events.c.run_id == bindparam("rid"))
_HEAD = select(_heads.c.seq, _heads.c.hash).where(_heads.c.run_id == bindparam("rid")).with_for_update()
_INSERT_HEAD = insert(_heads)
_UPDATE_HEAD = (update(_heads).where(_heads.c.run_id == bindparam("rid"))
                .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"), signature=bindparam("new_sig"),
                        key_id=bindparam("new_key")))


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: int
    run_id: str
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    lineage: dict[str, Any] = field(default_factory=dict)
    receipt: dict[str, Any] | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class ModelSummary:
    """A registry entry without its arrays (for listings)."""

    name: str
    version: int
    run_id: str
    created_at: datetime | None
    lineage: dict[str, Any]
    has_receipt: bool


def _pack(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> bytes:
    return encode(Message(run_id="", step=0, sender="store", recipient="store", kind="state",
                          arrays=dict(arrays), meta=dict(meta)))


def _unpack(blob: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    message = decode(blob)
    return dict(message.arrays), dict(message.meta)


def new_run_id() -> str:
    return utcnow().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers (sampan runs list) never block a run
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable at every commit in WAL mode, minus fsync stalls
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def _migrate(engine: Engine) -> None:
    """Add the nullable columns newer code expects to tables made by older code (SQLite and PostgreSQL)."""
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table, columns in _ADDED_COLUMNS.items():
            present = {c["name"] for c in inspector.get_columns(table)}
            for column, sql_type in columns.items():
                if column not in present:
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))


def _canonical_sha256(value: Any) -> str:
    return hashlib.sha256(_canonical(_json_safe(value))).hexdigest()


def _json_safe(value: Any) -> Any:
    """JSON as the database will give it back: string keys, lists, no NaN/inf (PostgreSQL rejects them)."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return _json_safe(float(value))
    if isinstance(value, np.bool_):
        return bool(value)
    return value
