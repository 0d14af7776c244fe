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
before signing existed (no position, no signature) still verify as unsigned legacy prefixes of a signed
chain; under a pinned key (given, or this store's key file) every run must end in a signed head, so a chain
never signed (or stripped of its signatures) is reported: its hashes alone prove nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Table, create_engine, insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from sampan.runtime.audit_chain import (  # noqa: F401  (re-exported: the store's public audit API)
    GENESIS,
    AuditProblem,
    AuditReport,
    AuditSigner,
    _canonical,
    _check_signature,
    _event_hash,
    _event_message,
    _head_message,
    _signed_event_hash,
    _verify_chain,
    default_audit_key_path,
    key_id,
    load_public_key,
)
from sampan.runtime.errors import StoreError
from sampan.runtime.store_registry import ModelRegistry
from sampan.runtime.store_schema import (  # noqa: F401  (re-exported: importers use sampan.runtime.store)
    _ADDED_COLUMNS,
    _COUNT_EVENTS,
    _HEAD,
    _INSERT_CHECKPOINT,
    _INSERT_EVENT,
    _INSERT_HEAD,
    _INSERT_ROUND,
    _LAST_EVENT_HASH,
    _PRUNE_CHECKPOINTS,
    _UPDATE_HEAD,
    _UPDATE_PROGRESS,
    DEFAULT_STORE_URL,
    KEEP_CHECKPOINTS,
    AuditHeadRow,
    AuditKeyRow,
    Base,
    Checkpoint,
    CheckpointRow,
    EventRow,
    LedgerRow,
    ModelRow,
    ModelSummary,
    RegisteredModel,
    RoundRow,
    RunRow,
    _canonical_sha256,
    _json_safe,
    _migrate,
    _pack,
    _sqlite_pragmas,
    _unpack,
    new_run_id,
    utcnow,
)


class Store(ModelRegistry):
    """Typed access to the run store. Create with `Store.open(url)`."""

    def __init__(self, engine: Engine, audit_key: str | Path | None = None) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)
        url = engine.url.render_as_string(hide_password=True)
        self.audit_key_path: Path | None = Path(audit_key).expanduser() if audit_key else default_audit_key_path(url)
        self._signer: AuditSigner | None = None
        self._registered_keys: set[str] = set()

    @classmethod
    def open(cls, url: str | None = None, *, audit_key: str | Path | None = None) -> Store:
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
        keys = cast(Table, AuditKeyRow.__table__)
        if s.execute(select(keys.c.key_id).where(keys.c.key_id == signer.key_id)).first() is None:
            s.execute(insert(keys).values(key_id=signer.key_id, public_key=signer.public_raw.hex(),
                                          created_at=utcnow()))
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
            problem, signed, chain = _verify_chain(rid, rows, heads.get(rid), keys, require_head=pinned)
            totals["signed"] += signed
            totals["legacy"] += len(rows) - signed
            if problem is None and not rows and rid in known_runs:
                problem = AuditProblem(rid, 0, None, None, "the run exists but has no audit entries (deleted?)")
            if problem is None and anchor and rid in anchor:
                pos, digest = int(anchor[rid][0]), str(anchor[rid][1])
                if pos > len(chain) or chain[pos - 1] != digest:
                    problem = AuditProblem(rid, pos, None, None,
                                           f"the anchored entry {pos} ({digest[:12]}…) is no longer "
                                           "in the chain: rolled back, truncated or rewritten since anchoring")
            if problem is not None:
                problems.append(problem)
            if chain:
                head_out[rid] = (len(chain), chain[-1])
        return AuditReport(runs=len(run_ids), entries=totals["entries"], signed=totals["signed"],
                           legacy=totals["legacy"], key_ids=sorted(keys), pinned=pinned, heads=head_out,
                           problems=problems)
