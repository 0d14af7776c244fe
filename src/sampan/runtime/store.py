"""The run store: runs, per-round checkpoints and metrics, audit events and registered models.

SQLite file by default; any SQLAlchemy URL (e.g. postgresql+psycopg://...) in production. Arrays are
stored with the wire codec (dtype + shape + little-endian bytes), metadata as JSON: no pickle at rest.
A round's checkpoint, metrics and audit events are written in one transaction, so a crash leaves either
the whole round or none of it.

Audit log: every event of a run is one link of a hash chain (each entry's hash covers the previous
hash, its position, time, kind and detail) and is signed with the coordinator's Ed25519 key; a signed
head row per run names the last entry, so deleting entries from the end is caught too. The key lives
in a file (0600): `audit_key=` / $SAMPAN_AUDIT_KEY, else next to a SQLite store (`<db>.audit-key.pem`),
else under ~/.config/sampan/audit-keys/. `verify_audit` recomputes everything and names the first bad
entry. What no log kept in the same database can catch on its own: someone holding both the database
and an old copy of it rolling the whole run back (or deleting a run with its events); anchor the heads
outside (`sampan audit-log verify --write-anchor`, then `--anchor`) to catch that too. Chains written
before signing existed (no position, no signature) still verify as unsigned legacy prefixes.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import (
    JSON, BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String, Text, bindparam, create_engine, delete, event, func,
    insert, inspect, select, text, update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sampan.runtime.audit_chain import (  # noqa: F401  (re-exported: the store's public audit API)
    GENESIS, AuditProblem, AuditReport, AuditSigner, _canonical, _check_signature, _event_hash, _event_message,
    _head_message, _signed_event_hash, _verify_chain, default_audit_key_path, key_id, load_public_key,
)
from sampan.runtime.errors import StoreError
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

_runs, _checkpoints, _rounds, _events = (RunRow.__table__, CheckpointRow.__table__, RoundRow.__table__,
                                         EventRow.__table__)
_heads = AuditHeadRow.__table__
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


class Store:
    """Typed access to the run store. Create with `Store.open(url)`."""

    def __init__(self, engine: Engine, audit_key: str | Path | None = None) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)
        url = engine.url.render_as_string(hide_password=True)
        self.audit_key_path: Path | None = Path(audit_key).expanduser() if audit_key else default_audit_key_path(url)
        self._signer: AuditSigner | None = None
        self._registered_keys: set[str] = set()

    @classmethod
    def open(cls, url: str | None = None, *, audit_key: str | Path | None = None) -> "Store":
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
            _migrate(engine)
        except OperationalError as exc:
            raise StoreError(f"cannot open run store {url!r}: {exc.orig}") from None
        return cls(engine, audit_key)

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
                   state_meta: Mapping[str, Any], metrics: Mapping[str, Any], seconds: float,
                   events: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> None:
        """Atomically record a finished round: checkpoint, metrics, audit events, run progress.

        `events` are extra audit entries of the round (traffic, budget charges, secure aggregation),
        written in the same transaction as the checkpoint they describe.

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
            for kind, detail in events:
                self._append_event(conn, run_id, kind, detail)
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

    # --- the write-ahead privacy ledger -----------------------------------------------------------
    def charge_ledger(self, run_id: str, ledger_json: str, detail: Mapping[str, Any]) -> None:
        """Durably replace the run's ledger and log the charge (`budget_charged`), in one transaction.

        Called before the charged request is sent: once this returns, the charge survives any crash."""
        with self._session.begin() as s:
            row = s.get(LedgerRow, run_id)
            if row is None:
                s.add(LedgerRow(run_id=run_id, ledger=ledger_json, updated_at=utcnow()))
            else:
                row.ledger, row.updated_at = ledger_json, utcnow()
            self._append_event(s, run_id, "budget_charged", detail)

    def ledger(self, run_id: str) -> str | None:
        """The run's durable ledger (JSON), or None if nothing was charged yet."""
        with self._session() as s:
            row = s.get(LedgerRow, run_id)
            return row.ledger if row is not None else None

    # --- audit events -----------------------------------------------------------------------------
    def log_event(self, run_id: str, kind: str, detail: Mapping[str, Any]) -> None:
        with self._session.begin() as s:
            self._append_event(s, run_id, kind, detail)

    def events(self, run_id: str) -> list[EventRow]:
        with self._session() as s:
            return list(s.scalars(select(EventRow).where(EventRow.run_id == run_id).order_by(EventRow.id)))

    def verify_events(self, run_id: str) -> bool:
        """Recompute the hash chain (and signatures); False if any event was altered, removed or reordered."""
        return self.verify_audit(run_id).ok

    # --- signing ----------------------------------------------------------------------------------
    @property
    def signer(self) -> AuditSigner:
        """The coordinator's signing key, loaded (or made) at the first write that needs it."""
        if self._signer is None:
            if self.audit_key_path is None:
                self._signer = AuditSigner(Ed25519PrivateKey.generate())
            else:
                self._signer = AuditSigner.load_or_create(self.audit_key_path)
        return self._signer

    def _register_key(self, s: Session | Connection, signer: AuditSigner) -> None:
        if signer.key_id in self._registered_keys:
            return
        keys = AuditKeyRow.__table__
        if s.execute(select(keys.c.key_id).where(keys.c.key_id == signer.key_id)).first() is None:
            s.execute(insert(keys).values(key_id=signer.key_id, public_key=signer.public_raw.hex(), created_at=utcnow()))
        self._registered_keys.add(signer.key_id)

    def _append_event(self, s: Session | Connection, run_id: str, kind: str, detail: Mapping[str, Any]) -> None:
        signer = self.signer
        self._register_key(s, signer)
        head = s.execute(_HEAD, {"rid": run_id}).first()
        if head is not None:
            prev, seq = str(head.hash), int(head.seq) + 1
        else:  # first entry of a run, or a chain written before heads existed
            prev = s.execute(_LAST_EVENT_HASH, {"rid": run_id}).scalar() or GENESIS
            seq = int(s.execute(_COUNT_EVENTS, {"rid": run_id}).scalar() or 0) + 1
        detail = _json_safe(dict(detail))
        at = utcnow()
        digest = _signed_event_hash(run_id, seq, at, prev, kind, detail)
        signature = signer.sign(_event_message(digest))
        s.execute(_INSERT_EVENT, {"run_id": run_id, "at": at, "kind": kind, "detail": detail, "prev_hash": prev,
                                  "hash": digest, "seq": seq, "signature": signature, "key_id": signer.key_id})
        head_sig = signer.sign(_head_message(run_id, seq, digest))
        if head is None:
            s.execute(_INSERT_HEAD, {"run_id": run_id, "seq": seq, "hash": digest, "signature": head_sig,
                                     "key_id": signer.key_id})
        else:
            s.execute(_UPDATE_HEAD, {"rid": run_id, "new_seq": seq, "new_hash": digest, "new_sig": head_sig,
                                     "new_key": signer.key_id})

    # --- verification -----------------------------------------------------------------------------
    def trusted_keys(self, public_keys: Iterable[bytes] | None = None) -> tuple[dict[str, bytes], bool]:
        """Keys a verification trusts, and whether they are pinned (given, or this store's own key file)
        rather than merely read from the database (which whoever edits the log could also edit)."""
        if public_keys is not None:
            return {key_id(k): k for k in public_keys}, True
        if self._signer is not None or (self.audit_key_path is not None and self.audit_key_path.exists()):
            signer = self.signer
            return {signer.key_id: signer.public_raw}, True
        with self._session() as s:
            rows = s.execute(select(AuditKeyRow.key_id, AuditKeyRow.public_key)).all()
        return {str(k): bytes.fromhex(str(v)) for k, v in rows}, False

    def verify_audit(self, run_id: str | None = None, *, public_keys: Iterable[bytes] | None = None,
                     anchor: Mapping[str, Sequence[Any]] | None = None) -> AuditReport:
        """Recompute every chain (or one run's): hashes, positions, signatures and the signed heads.

        `anchor` maps run ids to (position, hash) recorded earlier (e.g. by `--write-anchor`): each must
        still be in the chain, which catches a rollback or a deleted run that the database alone cannot.
        """
        keys, pinned = self.trusted_keys(public_keys)
        with self._session() as s:
            if run_id is not None:
                run_ids = [run_id]
            else:
                found = set(s.scalars(select(EventRow.run_id).distinct())) | set(s.scalars(select(RunRow.run_id))) \
                    | set(s.scalars(select(AuditHeadRow.run_id)))
                run_ids = sorted(found | set(anchor or {}))
            known_runs = set(s.scalars(select(RunRow.run_id).where(RunRow.run_id.in_(run_ids))))
            heads = {h.run_id: h for h in s.scalars(select(AuditHeadRow).where(AuditHeadRow.run_id.in_(run_ids)))}
        problems: list[AuditProblem] = []
        totals = {"entries": 0, "signed": 0, "legacy": 0}
        head_out: dict[str, tuple[int, str]] = {}
        for rid in run_ids:
            rows = self.events(rid)
            totals["entries"] += len(rows)
            problem, signed, chain = _verify_chain(rid, rows, heads.get(rid), keys)
            totals["signed"] += signed
            totals["legacy"] += len(rows) - signed
            if problem is None and not rows and rid in known_runs:
                problem = AuditProblem(rid, 0, None, None, "the run exists but has no audit entries (deleted?)")
            if problem is None and anchor and rid in anchor:
                pos, digest = int(anchor[rid][0]), str(anchor[rid][1])
                if pos > len(chain) or chain[pos - 1] != digest:
                    problem = AuditProblem(rid, pos, None, None, f"the anchored entry {pos} ({digest[:12]}…) is no longer "
                                           "in the chain: rolled back, truncated or rewritten since anchoring")
            if problem is not None:
                problems.append(problem)
            if chain:
                head_out[rid] = (len(chain), chain[-1])
        return AuditReport(runs=len(run_ids), entries=totals["entries"], signed=totals["signed"],
                           legacy=totals["legacy"], key_ids=sorted(keys), pinned=pinned, heads=head_out,
                           problems=problems)

    # --- model registry ---------------------------------------------------------------------------
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
