"""Backup and restore of a whole store: every table the database holds, into one archive and back.

Why: the store holds the runs, ledgers, the signed audit log, the model registry and (on a coordinator
with the console) the control plane's accounts, approvals and budgets. A backup must carry all of them
and a restore must give back exactly what was saved or nothing at all.

Backup reflects the database (every table present, the control plane's included, without a list kept
here) and writes one zip archive, atomically and 0600 (it holds password hashes and models):
`manifest.json` (format, per-table columns in a portable form, primary and foreign keys, indexes, row
count and the SHA-256 of the table's file) and `tables/<table>.jsonl` (one JSON array per row; bytes —
the stored arrays — as base64, times as ISO 8601, decimals as text). Restore checks the manifest and
every file's hash and row count before it writes anything, refuses a database that already holds rows,
creates the missing tables (the run store's own definitions first, then the portable ones), inserts
every row in one transaction, re-verifies every audit chain (hashes, positions, Ed25519 signatures,
signed heads) inside that transaction and commits only if all of it holds. PostgreSQL sequences are
moved past the restored ids. A corrupted or edited archive is refused with the table it fails at.

Threat model: the archive is as sensitive as the database; keep it where the database's backups go.
Its hashes catch corruption and casual edits, not a forger who rewrites the manifest as well; the audit
chains' signatures catch a forged audit log when the key is pinned: `public_keys`, or by default the target
store's own audit key file when it exists (`Store.trusted_keys`' rule). Pinned, every run must end in a
signed head, so a chain stripped of its signatures and re-hashed is refused; unpinned (no key given, no
key file), only the keys recorded in the archive are used and the check proves nothing against a forger.
The summary says which, and how many entries are unsigned legacy ones. Names in the manifest must be
plain identifiers; statements are built by SQLAlchemy, never pasted. Console accounts' TOTP seeds are
stored encrypted (`sampan.web.totp_seal`, key outside the database), so an archive does not carry them in
the clear; password hashes (argon2id) are in it.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Time,
    create_engine,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import TypeEngine

from sampan.files import atomic_write_bytes
from sampan.runtime.audit_chain import (
    AuditProblem,
    _verify_chain,
    default_audit_key_path,
    key_id,
    load_public_key,
)
from sampan.runtime.errors import StoreError
from sampan.runtime.store_schema import Base

__all__ = ["BackupError", "BackupSummary", "backup", "restore", "read_manifest", "FORMAT"]

FORMAT = "sampan-store-backup"
VERSION = 1


class BackupError(StoreError):
    """An archive that cannot be restored (corrupt, edited, wrong format) or a target that is not empty."""


@dataclass(frozen=True)
class BackupSummary:
    tables: dict[str, int]  # table -> rows
    audit_entries: int = 0
    unsigned_entries: int = 0  # legacy (pre-signing) entries: covered only by a later signed entry or head
    pinned: bool = False  # the audit log was checked against pinned keys (given, or the target's key file)


# --- values and column types ----------------------------------------------------------------------
def _codec(type_: TypeEngine[Any]) -> str:
    if isinstance(type_, JSON):
        return "json"
    if isinstance(type_, LargeBinary) or type_.__class__.__name__ in ("BYTEA", "BLOB", "_Binary"):
        return "bytes"
    if isinstance(type_, DateTime):
        return "datetime"
    if isinstance(type_, Date):
        return "date"
    if isinstance(type_, Time):
        return "time"
    if isinstance(type_, Numeric) and not isinstance(type_, Float) and getattr(type_, "asdecimal", False):
        return "decimal"
    return "plain"


def _portable_type(type_: TypeEngine[Any]) -> dict[str, Any]:
    """A dialect-free description of a reflected column type (SQLite and PostgreSQL both read it back)."""
    codec = _codec(type_)
    if codec == "json":
        return {"type": "json"}
    if codec == "bytes":
        return {"type": "bytes"}
    if codec == "datetime":
        return {"type": "datetime", "timezone": bool(getattr(type_, "timezone", False))}
    if codec in ("date", "time"):
        return {"type": codec}
    if isinstance(type_, Boolean):
        return {"type": "boolean"}
    if isinstance(type_, BigInteger):
        return {"type": "bigint"}
    if isinstance(type_, Integer):
        return {"type": "integer"}
    if isinstance(type_, Float):
        return {"type": "float"}
    if isinstance(type_, Numeric):
        return {"type": "numeric", "precision": type_.precision, "scale": type_.scale}
    if isinstance(type_, String) and not isinstance(type_, Text) and getattr(type_, "length", None):
        return {"type": "string", "length": type_.length}
    return {"type": "text"}


def _sql_type(spec: Mapping[str, Any]) -> TypeEngine[Any]:
    kind = spec.get("type")
    types: dict[str, TypeEngine[Any]] = {"json": JSON(), "bytes": LargeBinary(), "date": Date(), "time": Time(),
                                         "boolean": Boolean(), "bigint": BigInteger(), "integer": Integer(),
                                         "float": Float(), "text": Text()}
    if kind == "datetime":
        return DateTime(timezone=bool(spec.get("timezone")))
    if kind == "numeric":
        return Numeric(spec.get("precision"), spec.get("scale"))
    if kind == "string":
        return String(int(spec.get("length") or 255))
    if kind not in types:
        raise BackupError(f"archive: unknown column type {kind!r}")
    return types[kind]


def _encode(value: Any, codec: str) -> Any:
    if value is None or codec in ("json", "plain"):
        return value
    if codec == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    if codec in ("datetime", "date", "time"):
        return value.isoformat()
    if codec == "decimal":
        return str(value)
    raise AssertionError(codec)


def _decode(value: Any, codec: str, aware: bool) -> Any:
    if value is None or codec in ("json", "plain"):
        return value
    if codec == "bytes":
        return base64.b64decode(str(value), validate=True)
    if codec == "datetime":
        at = dt.datetime.fromisoformat(str(value))
        if aware and at.tzinfo is None:  # the store writes UTC; SQLite hands times back without a zone
            at = at.replace(tzinfo=dt.UTC)
        if not aware and at.tzinfo is not None:
            at = at.astimezone(dt.UTC).replace(tzinfo=None)
        return at
    if codec == "date":
        return dt.date.fromisoformat(str(value))
    if codec == "time":
        return dt.time.fromisoformat(str(value))
    if codec == "decimal":
        return decimal.Decimal(str(value))
    raise AssertionError(codec)


def _engine(url: str) -> Engine:
    try:
        return create_engine(url, future=True)
    except Exception as exc:  # ArgumentError, a missing driver (ImportError), ...
        raise StoreError(f"cannot open store {url!r}: {exc}") from None


# --- backup ---------------------------------------------------------------------------------------
def _table_manifest(table: Table) -> dict[str, Any]:
    pk = [c.name for c in table.primary_key.columns]
    return {
        "name": table.name,
        "columns": [{"name": c.name, **_portable_type(c.type), "nullable": bool(c.nullable)} for c in table.columns],
        "primary_key": pk,
        "foreign_keys": [{"columns": [e.parent.name for e in fk.elements], "table": fk.referred_table.name,
                          "referred": [e.column.name for e in fk.elements]} for fk in table.foreign_key_constraints],
        "indexes": [{"name": ix.name, "columns": [c.name for c in ix.columns], "unique": bool(ix.unique)}
                    for ix in table.indexes if ix.name],
    }


def backup(url: str, to: str | Path) -> BackupSummary:
    """Every table of the store at `url` into the archive `to` (written atomically, 0600)."""
    engine = _engine(url)
    meta = MetaData()
    buffer = io.BytesIO()
    counts: dict[str, int] = {}
    try:
        meta.reflect(engine)
        tables = []
        with engine.connect() as conn, conn.begin(), \
                zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            # one read transaction: on PostgreSQL (repeatable read) and SQLite (WAL) a consistent snapshot
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            for table in meta.sorted_tables:
                entry = _table_manifest(table)
                codecs = [_codec(c.type) for c in table.columns]
                order = list(table.primary_key.columns) or list(table.columns)
                lines = []
                for row in conn.execute(select(table).order_by(*order)):
                    lines.append(json.dumps([_encode(v, c) for v, c in zip(row, codecs, strict=True)],
                                            separators=(",", ":"), ensure_ascii=False, default=str))
                data = ("\n".join(lines) + ("\n" if lines else "")).encode()
                entry["file"] = f"tables/{table.name}.jsonl"
                entry["rows"] = len(lines)
                entry["sha256"] = hashlib.sha256(data).hexdigest()
                archive.writestr(entry["file"], data)
                tables.append(entry)
                counts[table.name] = len(lines)
            manifest = {"format": FORMAT, "version": VERSION, "source_dialect": engine.dialect.name,
                        "created_at": dt.datetime.now(dt.UTC).isoformat(), "tables": tables}
            archive.writestr("manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    except SQLAlchemyError as exc:
        raise StoreError(f"backup of {url!r} failed: {exc}") from None
    finally:
        engine.dispose()
    atomic_write_bytes(to, buffer.getvalue(), 0o600)
    return BackupSummary(counts)


# --- restore --------------------------------------------------------------------------------------
def read_manifest(archive: zipfile.ZipFile, source: str) -> dict[str, Any]:
    try:
        manifest = json.loads(archive.read("manifest.json"))
    except KeyError:
        raise BackupError(f"{source}: no manifest.json (not a Sampan store backup)") from None
    except ValueError as exc:
        raise BackupError(f"{source}: manifest.json is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{source}: not a Sampan store backup (format {manifest.get('format')!r})"
                          if isinstance(manifest, dict) else f"{source}: manifest.json is not an object")
    if manifest.get("version") != VERSION:
        raise BackupError(f"{source}: backup format version {manifest.get('version')!r}; this Sampan reads {VERSION}")
    if not isinstance(manifest.get("tables"), list):
        raise BackupError(f"{source}: manifest.json lists no tables")
    return manifest


def _load_rows(archive: zipfile.ZipFile, entry: Mapping[str, Any], source: str) -> list[list[Any]]:
    """A table's rows, after its file's SHA-256 and row count match the manifest."""
    name = entry.get("name")
    try:
        data = archive.read(str(entry["file"]))
    except KeyError:
        raise BackupError(f"{source}: table {name!r}: its file {entry.get('file')!r} is missing") from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:  # a damaged member (CRC error)
        raise BackupError(f"{source}: table {name!r}: its file cannot be read ({exc})") from None
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise BackupError(f"{source}: table {name!r}: its file does not match the manifest's SHA-256 "
                          "(corrupted or edited); nothing was restored")
    try:
        rows = [json.loads(line) for line in data.decode().splitlines() if line]
    except ValueError as exc:
        raise BackupError(f"{source}: table {name!r}: a row is not JSON ({exc})") from None
    width = len(entry.get("columns") or [])
    if len(rows) != entry.get("rows") or any(not isinstance(r, list) or len(r) != width for r in rows):
        raise BackupError(f"{source}: table {name!r}: {len(rows)} rows where the manifest says {entry.get('rows')} "
                          f"of {width} columns")
    return rows


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _check_identifiers(manifest: Mapping[str, Any], source: str) -> None:
    """Every table, column, key and index name must be a plain SQL identifier (letters, digits, '_', at most
    63 characters). Why: a forged manifest's names end up in DDL and statements; SQLAlchemy quotes them, and
    this refuses anything a quoting slip could turn into SQL of the archive's choosing (R14-ENT-4)."""
    def check(value: Any, what: str) -> None:
        if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
            raise BackupError(f"{source}: {what} {str(value)[:80]!r} is not a plain identifier (letters, digits, "
                              "'_'); refusing the archive")

    for entry in manifest["tables"]:
        if not isinstance(entry, dict):
            raise BackupError(f"{source}: manifest.json: a table entry is not an object")
        table = entry.get("name")
        check(table, "table name")
        for column in entry.get("columns") or []:
            check(column.get("name") if isinstance(column, dict) else column, f"table {table!r}: column name")
        for name in entry.get("primary_key") or []:
            check(name, f"table {table!r}: primary key column")
        for fk in entry.get("foreign_keys") or []:
            check(fk.get("table"), f"table {table!r}: foreign key's table")
            for name in list(fk.get("columns") or []) + list(fk.get("referred") or []):
                check(name, f"table {table!r}: foreign key column")
        for ix in entry.get("indexes") or []:
            check(ix.get("name"), f"table {table!r}: index name")
            for name in ix.get("columns") or []:
                check(name, f"table {table!r}: index column")


def _define(meta: MetaData, entry: Mapping[str, Any]) -> Table:
    pk = set(entry.get("primary_key") or [])
    columns = [Column(c["name"], _sql_type(c), primary_key=c["name"] in pk, nullable=bool(c.get("nullable", True)),
                      autoincrement=False) for c in entry["columns"]]
    table = Table(str(entry["name"]), meta, *columns)
    for fk in entry.get("foreign_keys") or []:
        table.append_constraint(ForeignKeyConstraint(fk["columns"], [f"{fk['table']}.{c}" for c in fk["referred"]]))
    for ix in entry.get("indexes") or []:
        Index(ix["name"], *[table.c[c] for c in ix["columns"]], unique=bool(ix.get("unique")))
    return table


def _check_empty(conn: Connection, url: str) -> None:
    meta = MetaData()
    meta.reflect(conn)
    for table in meta.sorted_tables:
        if conn.execute(select(func.count()).select_from(table)).scalar():
            raise BackupError(f"restore refused: the store {url!r} is not empty (table {table.name!r} has rows); "
                              "restore only into a new, empty database")


def _pinned_keys(url: str, public_keys: Iterable[bytes] | None) -> list[bytes] | None:
    """The keys a restore trusts: those given, else the target store's own audit key when its file exists
    (as `Store.trusted_keys` does), else None (only the keys recorded in the archive: no real check)."""
    if public_keys is not None:
        return list(public_keys)
    path = default_audit_key_path(url)
    if path is not None and path.exists():
        return [load_public_key(path)]
    return None


def _verify_audit(conn: Connection, public_keys: Iterable[bytes] | None) -> tuple[int, int, list[AuditProblem]]:
    """Every restored audit chain, checked inside the restore's transaction: (entries, unsigned, problems).

    With pinned keys every run must end in a signed head (an unsigned or signature-stripped chain is refused)."""
    meta = MetaData()
    meta.reflect(conn, only=lambda name, _m: name in ("sampan_events", "sampan_audit_heads", "sampan_audit_keys"))
    if "sampan_events" not in meta.tables:
        return 0, 0, []
    events, heads = meta.tables["sampan_events"], meta.tables.get("sampan_audit_heads")
    if public_keys is not None:
        keys = {key_id(k): k for k in public_keys}
    elif "sampan_audit_keys" in meta.tables:
        stored = meta.tables["sampan_audit_keys"]
        keys = {str(r.key_id): bytes.fromhex(str(r.public_key)) for r in conn.execute(select(stored))}
    else:
        keys = {}
    head_rows = {r.run_id: r for r in conn.execute(select(heads))} if heads is not None else {}
    rows_by_run: dict[str, list[Any]] = {}
    for row in conn.execute(select(events).order_by(events.c.run_id, events.c.id)):
        rows_by_run.setdefault(row.run_id, []).append(row)
    problems = []
    for run_id in sorted(set(rows_by_run) | set(head_rows)):
        problem, _, _ = _verify_chain(run_id, rows_by_run.get(run_id, []), head_rows.get(run_id), keys,
                                      require_head=public_keys is not None)
        if problem is not None:
            problems.append(problem)
    unsigned = sum(1 for rows in rows_by_run.values() for r in rows if r.signature is None)
    return sum(len(r) for r in rows_by_run.values()), unsigned, problems


def _advance_sequences(conn: Connection, tables: Sequence[Table]) -> None:
    """PostgreSQL: serial/identity sequences start after the restored ids (the next insert must not collide)."""
    preparer = conn.dialect.identifier_preparer
    for table in tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or not isinstance(pk[0].type, Integer):
            continue
        column = pk[0]
        # built by SQLAlchemy (names quoted by the dialect, values bound): nothing from the archive is pasted
        top = func.max(column)
        conn.execute(select(func.setval(func.pg_get_serial_sequence(preparer.format_table(table), column.name),
                                        func.coalesce(top, 1), top.is_not(None))).select_from(table))


def restore(source: str | Path, url: str, *, public_keys: Iterable[bytes] | None = None,
            extra_metadata: Sequence[MetaData] = ()) -> BackupSummary:
    """Restore the archive `source` into the empty store at `url`: everything, in one transaction, or nothing.

    `extra_metadata`: table definitions of the layers above (e.g. the control plane's), created with their
    own types and constraints before the portable definitions fill in any table still missing.
    """
    name = str(source)
    try:
        archive = zipfile.ZipFile(source)
    except FileNotFoundError:
        raise BackupError(f"backup archive {name!r} does not exist") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise BackupError(f"{name}: not a readable backup archive ({exc})") from None
    with archive:
        manifest = read_manifest(archive, name)
        _check_identifiers(manifest, name)
        entries = manifest["tables"]
        loaded = {str(e.get("name")): _load_rows(archive, e, name) for e in entries}  # all checked before writing
    pinned = _pinned_keys(url, public_keys)
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            _check_empty(conn, url)
            Base.metadata.create_all(conn)
            for extra in extra_metadata:
                extra.create_all(conn)
            present = MetaData()
            present.reflect(conn)
            portable = MetaData()
            missing = [_define(portable, e) for e in entries if e["name"] not in present.tables]
            portable.create_all(conn, tables=missing)
            target = MetaData()
            target.reflect(conn)
            restored: list[Table] = []
            for entry in entries:
                table = target.tables[entry["name"]]
                names = [c["name"] for c in entry["columns"]]
                unknown = [n for n in names if n not in table.c]
                if unknown:
                    raise BackupError(f"{name}: table {entry['name']!r}: columns {unknown} do not exist in the target "
                                      "store (made by another Sampan version?)")
                specs = {c["name"]: c for c in entry["columns"]}
                codecs = [_codec(_sql_type(specs[n])) for n in names]
                aware = [bool(getattr(table.c[n].type, "timezone", False)) for n in names]
                rows = [{n: _decode(v, c, a) for n, v, c, a in zip(names, row, codecs, aware, strict=True)}
                        for row in loaded[entry["name"]]]
                if rows:
                    conn.execute(insert(table), rows)
                restored.append(table)
            if engine.dialect.name == "postgresql":
                _advance_sequences(conn, restored)
            audited, unsigned, problems = _verify_audit(conn, pinned)
            if problems:
                raise BackupError(f"{name}: the restored audit log does not verify ({problems[0]}); nothing was "
                                  "restored")
    except (SQLAlchemyError, ValueError) as exc:
        raise BackupError(f"restore of {name!r} into {url!r} failed, nothing was written: {exc}") from None
    finally:
        engine.dispose()
    return BackupSummary({e["name"]: int(e["rows"]) for e in entries}, audited, unsigned, pinned is not None)
