"""The signed, hash-chained audit log: any edit, deletion, reordering or truncation is found and named."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from sampan.cli.registry import audit_log_app
from sampan.runtime.store import (
    AuditHeadRow,
    AuditKeyRow,
    AuditSigner,
    EventRow,
    Store,
    _event_message,
    _head_message,
    _signed_event_hash,
)


@pytest.fixture(autouse=True)
def _audit_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep every store's signing key in the test's folder (also for PostgreSQL stores)."""
    path = tmp_path / "keys" / "coordinator.pem"
    monkeypatch.setenv("SAMPAN_AUDIT_KEY", str(path))
    return path


def _run_with_events(store: Store, n: int = 4) -> str:
    run_id = store.create_run(name="r", workflow="horizontal", seed=1, config={"a": 1}, total_rounds=1)
    for i in range(n):
        store.log_event(run_id, "note", {"i": i, "party": f"bank_{i}"})
    return run_id


def _rows(store: Store, run_id: str) -> list[EventRow]:
    return store.events(run_id)


def _set(store: Store, row_id: int, **values) -> None:
    with store._session.begin() as s:
        s.execute(update(EventRow).where(EventRow.id == row_id).values(**values))


def test_every_entry_is_signed_and_the_key_file_is_private(store: Store, _audit_key: Path) -> None:
    run_id = _run_with_events(store)
    rows = _rows(store, run_id)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert all(r.signature and r.key_id == store.signer.key_id for r in rows)
    assert os.stat(_audit_key).st_mode & 0o777 == 0o600
    report = store.verify_audit(run_id)
    assert report.ok and report.pinned and report.signed == len(rows) and report.heads[run_id][0] == len(rows)


def test_an_edit_is_found_and_named(store: Store) -> None:
    run_id = _run_with_events(store)
    target = _rows(store, run_id)[2]
    _set(store, target.id, detail={"i": 99, "party": "bank_1"})
    report = store.verify_audit(run_id)
    assert not report.ok and not store.verify_events(run_id)
    bad = report.first_bad
    assert (bad.position, bad.event_id, bad.kind) == (3, target.id, "note") and "edited" in bad.reason


def test_an_edit_with_recomputed_hashes_fails_the_signature(store: Store) -> None:
    """Whoever can write the database can recompute hashes, but not sign them."""
    run_id = _run_with_events(store)
    rows = _rows(store, run_id)
    prev = rows[1].prev_hash
    for row in rows[1:]:  # rewrite entry 2 and re-chain everything after it
        detail = {"i": -1} if row.seq == 2 else row.detail
        digest = _signed_event_hash(run_id, row.seq, row.at, prev, row.kind, detail)
        _set(store, row.id, detail=detail, prev_hash=prev, hash=digest)
        prev = digest
    bad = store.verify_audit(run_id).first_bad
    assert bad.position == 2 and "signature does not verify" in bad.reason


def test_deletion_in_the_middle_and_at_the_end(store: Store) -> None:
    run_id = _run_with_events(store)
    rows = _rows(store, run_id)
    with store._session.begin() as s:
        s.execute(delete(EventRow).where(EventRow.id == rows[-1].id))
    bad = store.verify_audit(run_id).first_bad
    assert "truncated" in bad.reason  # the signed head still names the deleted last entry
    with store._session.begin() as s:
        s.execute(delete(AuditHeadRow).where(AuditHeadRow.run_id == run_id))
    assert "head of the chain is missing" in store.verify_audit(run_id).first_bad.reason
    with store._session.begin() as s:
        s.execute(delete(EventRow).where(EventRow.id == rows[2].id))
    bad = store.verify_audit(run_id).first_bad
    assert bad.position == 3 and bad.event_id == rows[3].id and "deleted" in bad.reason


def test_reordering_is_found(store: Store) -> None:
    run_id = _run_with_events(store)
    a, b = _rows(store, run_id)[2:4]
    fields = ("kind", "detail", "prev_hash", "hash", "seq", "signature", "key_id", "at")
    _set(store, a.id, **{f: getattr(b, f) for f in fields})
    _set(store, b.id, **{f: getattr(a, f) for f in fields})
    bad = store.verify_audit(run_id).first_bad
    assert bad.position == 3 and "reordered" in bad.reason


def test_stripped_signatures_and_foreign_keys_are_refused(store: Store) -> None:
    run_id = _run_with_events(store)
    rows = _rows(store, run_id)
    _set(store, rows[-1].id, signature=None, key_id=None, seq=None)
    assert "unsigned entry after signed ones" in store.verify_audit(run_id).first_bad.reason

    # an attacker re-signs the whole chain with their own key and records it in the database
    run2 = _run_with_events(store)
    forger = AuditSigner(Ed25519PrivateKey.generate())
    with store._session.begin() as s:
        s.add(AuditKeyRow(key_id=forger.key_id, public_key=forger.public_raw.hex()))
        for row in s.scalars(select(EventRow).where(EventRow.run_id == run2)):
            row.signature, row.key_id = forger.sign(_event_message(row.hash)), forger.key_id
        head = s.get(AuditHeadRow, run2)
        head.signature, head.key_id = forger.sign(_head_message(run2, head.seq, head.hash)), forger.key_id
    bad = store.verify_audit(run2).first_bad  # pinned to the coordinator's own key
    assert bad.position == 1 and "not trusted" in bad.reason
    assert store.verify_audit(run2, public_keys=[forger.public_raw]).ok  # only if someone trusts the forger


def test_cli_verify_names_the_first_bad_entry(store: Store) -> None:
    run_id = _run_with_events(store)
    url = store.engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    ok = runner.invoke(audit_log_app, ["verify", "--store", url])
    assert ok.exit_code == 0, ok.output
    assert "audit log intact" in ok.output and "pinned key" in ok.output
    target = _rows(store, run_id)[3]
    _set(store, target.id, kind="something_else")
    broken = runner.invoke(audit_log_app, ["verify", run_id, "--store", url])
    assert broken.exit_code == 1
    expected = f"first bad entry: run {run_id}: entry 4 (id {target.id}, something_else)"
    assert expected in broken.output.replace("\n", " ")
    shown = runner.invoke(audit_log_app, ["show", run_id, "--store", url])
    assert shown.exit_code == 0 and "run_created" in shown.output


def test_anchor_catches_a_rollback_the_database_cannot(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = Store.open(url)
    run_id = _run_with_events(store, 2)
    runner = CliRunner()
    anchor = tmp_path / "anchor.json"
    assert runner.invoke(audit_log_app, ["verify", "--store", url, "--write-anchor", str(anchor)]).exit_code == 0
    assert json.loads(anchor.read_text())["heads"][run_id][0] == 3
    with store._session.begin() as s:  # roll the whole run back: events, head and the run row itself
        s.execute(delete(EventRow).where(EventRow.run_id == run_id))
        s.execute(delete(AuditHeadRow).where(AuditHeadRow.run_id == run_id))
        from sampan.runtime.store import RunRow

        s.execute(delete(RunRow).where(RunRow.run_id == run_id))
    assert store.verify_audit().ok  # nothing left in the database to contradict
    result = runner.invoke(audit_log_app, ["verify", "--store", url, "--anchor", str(anchor)])
    assert result.exit_code == 1 and "no longer in the chain" in result.output


def test_public_key_pinning_from_the_cli(tmp_path: Path, _audit_key: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = Store.open(url)
    _run_with_events(store, 1)
    runner = CliRunner()
    other = tmp_path / "other.pem"
    AuditSigner.load_or_create(other)
    wrong = runner.invoke(audit_log_app, ["verify", "--store", url, "--public-key", str(other)])
    assert wrong.exit_code == 1 and "not trusted" in wrong.output
    right = runner.invoke(audit_log_app, ["verify", "--store", url, "--public-key", store.signer.public_raw.hex()])
    assert right.exit_code == 0, right.output


def test_legacy_store_is_migrated_and_its_unsigned_prefix_still_verifies(tmp_path: Path) -> None:
    """A store written before signing: old columns only, v1 hashes. Opening it adds the columns."""
    from sampan.runtime.store import _event_hash

    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE sampan_events (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id VARCHAR(64), at DATETIME,
            kind VARCHAR(50), detail JSON, prev_hash VARCHAR(64), hash VARCHAR(64));
        CREATE TABLE sampan_models (id INTEGER PRIMARY KEY AUTOINCREMENT, name VARCHAR(200), version INTEGER,
            run_id VARCHAR(64), meta JSON, arrays BLOB, created_at DATETIME);
    """)
    prev = "0" * 64
    for i in range(3):
        detail = {"i": i}
        digest = _event_hash(prev, "old", detail)
        con.execute(
            "INSERT INTO sampan_events (run_id, at, kind, detail, prev_hash, hash) VALUES (?,?,?,?,?,?)",
            ("legacy", "2025-01-01 00:00:00.000000", "old", json.dumps(detail), prev, digest),
        )
        prev = digest
    con.commit()
    con.close()
    store = Store.open(f"sqlite:///{db}")
    report = store.verify_audit("legacy")
    assert report.ok and report.legacy == 3 and report.signed == 0
    store.log_event("legacy", "new", {"x": 1})  # continues the chain, signed, at position 4
    rows = store.events("legacy")
    assert rows[-1].seq == 4 and rows[-1].prev_hash == prev and rows[-1].signature
    report = store.verify_audit("legacy")
    assert report.ok and (report.legacy, report.signed) == (3, 1)
    _set(store, rows[0].id, detail={"i": 7})
    bad = store.verify_audit("legacy").first_bad
    assert bad.position == 1 and "edited" in bad.reason
