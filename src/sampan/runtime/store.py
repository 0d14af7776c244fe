"""The run store: runs, per-round checkpoints and metrics, audit events and registered models.

SQLite file by default; any SQLAlchemy URL (e.g. postgresql+psycopg://...) in production. Arrays are
stored with the wire codec (dtype + shape + little-endian bytes), metadata as JSON: no pickle at rest.
A round's checkpoint, metrics and audit event are written in one transaction, so a crash leaves either
the whole round or none of it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
from sqlalchemy import (
    JSON, BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String, Text, bindparam, create_engine, delete, event, insert, select, update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sampan.wire import Message, decode, encode

DEFAULT_STORE_URL = "sqlite:///sampan-runs/sampan.db"
KEEP_CHECKPOINTS = 2  # older round checkpoints are pruned; metrics keep the full history


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


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


class ModelRow(Base):
    __tablename__ = "sampan_models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    arrays: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


_runs, _checkpoints, _rounds, _events = (RunRow.__table__, CheckpointRow.__table__, RoundRow.__table__,
                                         EventRow.__table__)
_UPDATE_PROGRESS = (update(_runs).where(_runs.c.run_id == bindparam("rid"))
                    .values(current_round=bindparam("rnd"), updated_at=bindparam("now")))
_INSERT_CHECKPOINT = insert(_checkpoints)
_PRUNE_CHECKPOINTS = delete(_checkpoints).where(_checkpoints.c.run_id == bindparam("rid"),
                                                _checkpoints.c.round <= bindparam("upto"))
_INSERT_ROUND = insert(_rounds)
_INSERT_EVENT = insert(_events)
_LAST_EVENT_HASH = (select(_events.c.hash).where(_events.c.run_id == bindparam("rid"))
                    .order_by(_events.c.id.desc()).limit(1))


class StoreError(RuntimeError):
    """The store cannot be opened or does not hold what was asked for."""


@dataclass(frozen=True)
class Checkpoint:
    round: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: int
    run_id: str
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]


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


class Store:
    """Typed access to the run store. Create with `Store.open(url)`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str | None = None) -> "Store":
        url = url or DEFAULT_STORE_URL
        try:
            if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
                Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, future=True)
        except (ArgumentError, ImportError) as exc:
            raise StoreError(f"cannot open run store {url!r}: {exc}") from None
        if engine.dialect.name == "sqlite":
            _sqlite_pragmas(engine)
        try:
            Base.metadata.create_all(engine)
        except OperationalError as exc:
            raise StoreError(f"cannot open run store {url!r}: {exc.orig}") from None
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    # --- runs -------------------------------------------------------------------------------------
    def create_run(self, *, name: str, workflow: str, seed: int, config: Mapping[str, Any],
                   total_rounds: int, run_id: str | None = None) -> str:
        run_id = run_id or new_run_id()
        with self._session.begin() as s:
            s.add(RunRow(run_id=run_id, name=name, workflow=workflow, status="created", seed=seed,
                         config=dict(config), info={}, current_round=0, total_rounds=total_rounds))
            self._append_event(s, run_id, "run_created", {"name": name, "workflow": workflow, "seed": seed})
        return run_id

    def get_run(self, run_id: str) -> RunRow:
        with self._session() as s:
            row = s.get(RunRow, run_id)
            if row is None:
                raise StoreError(f"no run {run_id!r} in the store at {self.engine.url.render_as_string()}")
            return row

    def list_runs(self, limit: int = 50) -> list[RunRow]:
        with self._session() as s:
            return list(s.scalars(select(RunRow).order_by(RunRow.created_at.desc()).limit(limit)))

    def set_status(self, run_id: str, status: str, *, error: str | None = None,
                   info: Mapping[str, Any] | None = None) -> None:
        with self._session.begin() as s:
            row = s.get(RunRow, run_id)
            if row is None:
                raise StoreError(f"no run {run_id!r}")
            row.status, row.updated_at = status, utcnow()
            if error is not None:
                row.error = error
            if info:
                row.info = {**(row.info or {}), **info}
            self._append_event(s, run_id, f"run_{status}", {"error": error} if error else {})

    def record_info(self, run_id: str, key: str, value: Any) -> None:
        """Attach a result (e.g. an audit) to a finished run, with an audit-log event."""
        with self._session.begin() as s:
            row = s.get(RunRow, run_id)
            if row is None:
                raise StoreError(f"no run {run_id!r}")
            row.info = {**(row.info or {}), key: value}
            row.updated_at = utcnow()
            self._append_event(s, run_id, f"{key}_recorded", {})

    # --- rounds and checkpoints -------------------------------------------------------------------
    def save_round(self, run_id: str, round_number: int, *, state_arrays: Mapping[str, np.ndarray],
                   state_meta: Mapping[str, Any], metrics: Mapping[str, Any], seconds: float) -> None:
        """Atomically record a finished round: checkpoint, metrics, audit event, run progress.

        A round is saved once: resuming continues after the latest checkpoint, never rewrites one.
        """
        blob = _pack(state_arrays, state_meta)
        now = utcnow()
        with self.engine.begin() as conn:  # prebuilt Core statements: this runs every round
            updated = conn.execute(_UPDATE_PROGRESS, {"rid": run_id, "rnd": round_number, "now": now})
            if updated.rowcount != 1:
                raise StoreError(f"no run {run_id!r}")
            conn.execute(_INSERT_CHECKPOINT, {"run_id": run_id, "round": round_number, "state": blob,
                                              "created_at": now})
            conn.execute(_PRUNE_CHECKPOINTS, {"rid": run_id, "upto": round_number - KEEP_CHECKPOINTS})
            if round_number > 0:
                conn.execute(_INSERT_ROUND, {"run_id": run_id, "round": round_number, "seconds": seconds,
                                             "metrics": dict(metrics)})
            self._append_event(conn, run_id, "round_saved", {
                "round": round_number, "state_sha256": hashlib.sha256(blob).hexdigest()})

    def latest_checkpoint(self, run_id: str) -> Checkpoint | None:
        with self._session() as s:
            row = s.scalars(select(CheckpointRow).where(CheckpointRow.run_id == run_id)
                            .order_by(CheckpointRow.round.desc()).limit(1)).first()
            if row is None:
                return None
            arrays, meta = _unpack(row.state)
            return Checkpoint(round=row.round, arrays=arrays, meta=meta)

    def rounds(self, run_id: str) -> list[RoundRow]:
        with self._session() as s:
            return list(s.scalars(select(RoundRow).where(RoundRow.run_id == run_id).order_by(RoundRow.round)))

    # --- audit events -----------------------------------------------------------------------------
    def log_event(self, run_id: str, kind: str, detail: Mapping[str, Any]) -> None:
        with self._session.begin() as s:
            self._append_event(s, run_id, kind, detail)

    def events(self, run_id: str) -> list[EventRow]:
        with self._session() as s:
            return list(s.scalars(select(EventRow).where(EventRow.run_id == run_id).order_by(EventRow.id)))

    def verify_events(self, run_id: str) -> bool:
        """Recompute the hash chain; False if any event was altered, removed or reordered."""
        prev = "0" * 64
        for row in self.events(run_id):
            if row.prev_hash != prev or row.hash != _event_hash(prev, row.kind, row.detail):
                return False
            prev = row.hash
        return True

    def _append_event(self, s: Session | Connection, run_id: str, kind: str, detail: Mapping[str, Any]) -> None:
        prev = s.execute(_LAST_EVENT_HASH, {"rid": run_id}).scalar() or "0" * 64
        detail = dict(detail)
        s.execute(_INSERT_EVENT, {"run_id": run_id, "at": utcnow(), "kind": kind, "detail": detail,
                                  "prev_hash": prev, "hash": _event_hash(prev, kind, detail)})

    # --- model registry ---------------------------------------------------------------------------
    def register_model(self, name: str, run_id: str, arrays: Mapping[str, np.ndarray],
                       meta: Mapping[str, Any]) -> int:
        with self._session.begin() as s:
            latest = s.scalars(select(ModelRow.version).where(ModelRow.name == name)
                               .order_by(ModelRow.version.desc()).limit(1)).first()
            version = (latest or 0) + 1
            s.add(ModelRow(name=name, version=version, run_id=run_id, meta=dict(meta),
                           arrays=_pack(arrays, {})))
            self._append_event(s, run_id, "model_registered", {"name": name, "version": version})
        return version

    def get_model(self, name: str, version: int | None = None) -> RegisteredModel:
        with self._session() as s:
            query = select(ModelRow).where(ModelRow.name == name)
            query = query.where(ModelRow.version == version) if version else query.order_by(ModelRow.version.desc())
            row = s.scalars(query.limit(1)).first()
            if row is None:
                raise StoreError(f"no model {name!r}" + (f" version {version}" if version else ""))
            arrays, _ = _unpack(row.arrays)
            return RegisteredModel(row.name, row.version, row.run_id, dict(row.meta), arrays)

    def models_for_run(self, run_id: str) -> Iterator[RegisteredModel]:
        with self._session() as s:
            for row in s.scalars(select(ModelRow).where(ModelRow.run_id == run_id).order_by(ModelRow.id)):
                arrays, _ = _unpack(row.arrays)
                yield RegisteredModel(row.name, row.version, row.run_id, dict(row.meta), arrays)


def _event_hash(prev: str, kind: str, detail: Mapping[str, Any]) -> str:
    body = json.dumps({"prev": prev, "kind": kind, "detail": detail}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()
