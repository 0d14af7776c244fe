"""Store backup and restore: every table (the control plane's too, found by reflection) into one archive and
back, in one transaction; a corrupted archive or a non-empty target is refused with nothing written. The forged
audit log in a self-consistent archive: tests/attacks/test_backup_forgery.py."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from _store_fill import fill as _fill
from sqlalchemy import MetaData, create_engine, inspect, select, text

from sampan.runtime.backup import BackupError, backup, restore
from sampan.runtime.store import Store


def _dump(url: str) -> dict[str, list[tuple[object, ...]]]:
    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    out = {}
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            rows = conn.execute(select(table).order_by(*table.primary_key.columns)).all()
            out[table.name] = [tuple(r) for r in rows]
    engine.dispose()
    return out


def _roundtrip(tmp_path: Path, source: str, target: str) -> None:
    run_id = _fill(source)
    archive = tmp_path / "store.backup"
    summary = backup(source, archive)
    assert archive.stat().st_mode & 0o777 == 0o600
    assert summary.tables["sampan_events"] >= 5 and summary.tables["console_users_fixture"] == 2
    result = restore(archive, target)
    assert result.audit_entries == summary.tables["sampan_events"]

    restored = Store.open(target)
    try:
        assert restored.verify_audit(run_id).ok
        assert restored.get_run(run_id).config == {"run": {"rounds": 2}}
        model = restored.get_model("sme-default", 1)
        np.testing.assert_array_equal(model.arrays["coef"], np.array([[0.25, -1.5]], dtype=np.float32))
        assert [r.metrics for r in restored.rounds(run_id)] == [{"auc": 0.71}, {"auc": 0.72}]
        restored.log_event(run_id, "after_restore", {})  # ids and sequences continue after the restored ones
        restored.register_model("sme-default", run_id, {"coef": np.zeros((1, 2))}, {"kind": "logistic"})
        assert restored.verify_audit(run_id).ok
    finally:
        restored.close()
    before, after = _dump(source), _dump(target)
    assert set(before) <= set(after)
    for name in ("console_users_fixture", "sampan_rounds", "sampan_ledgers", "sampan_audit_keys"):
        assert len(after[name]) == len(before[name]) and [r[0] for r in after[name]] == [r[0] for r in before[name]]
    assert after["console_users_fixture"] == before["console_users_fixture"]


def test_sqlite_to_sqlite(tmp_path: Path) -> None:
    _roundtrip(tmp_path, f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}")


@pytest.mark.postgres
def test_sqlite_to_postgres(tmp_path: Path, postgres_url: str) -> None:
    _roundtrip(tmp_path, f"sqlite:///{tmp_path / 'a.db'}", postgres_url)


def _rewrite(archive: Path, out: Path, member: str, change) -> None:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            dst.writestr(info.filename, change(data) if info.filename == member else data)


def _tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_corrupted_archive_is_refused_and_nothing_written(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    _fill(source)
    archive = tmp_path / "store.backup"
    backup(source, archive)
    edited = tmp_path / "edited.backup"
    _rewrite(archive, edited, "tables/sampan_rounds.jsonl", lambda d: d.replace(b"0.71", b"0.99"))
    target = f"sqlite:///{tmp_path / 'b.db'}"
    with pytest.raises(BackupError, match="sampan_rounds.*SHA-256"):
        restore(edited, target)
    assert _tables(target) == []

    truncated = tmp_path / "truncated.backup"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(BackupError, match="not a readable backup archive"):
        restore(truncated, target)
    assert _tables(target) == []


def test_restore_refuses_a_store_that_holds_rows(tmp_path: Path) -> None:
    source, target = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    _fill(source)
    archive = tmp_path / "store.backup"
    backup(source, archive)
    other = Store.open(target)
    other.create_run(name="mine", workflow="horizontal", seed=1, config={}, total_rounds=1)
    other.close()
    with pytest.raises(BackupError, match="not empty"):
        restore(archive, target)
    engine = create_engine(target)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM sampan_runs")).scalar() == 1
        assert "console_users_fixture" not in inspect(engine).get_table_names()
    engine.dispose()


def test_cli_backup_and_restore(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sampan.cli import app

    source, target = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    run_id = _fill(source)
    archive = tmp_path / "store.backup"
    runner = CliRunner()
    out = runner.invoke(app, ["store", "backup", "--store", source, "--to", str(archive)])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["store", "restore", "--from", str(archive), "--store", target])
    assert out.exit_code == 0, out.output
    assert "audit entries verified" in out.output
    again = runner.invoke(app, ["store", "restore", "--from", str(archive), "--store", target])
    assert again.exit_code == 2 and "not empty" in again.output and "Traceback" not in again.output
    missing = runner.invoke(app, ["store", "restore", "--from", str(tmp_path / "nope"), "--store", target])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    restored = Store.open(target)
    assert restored.verify_audit(run_id).ok
    restored.close()


@pytest.mark.postgres
def test_postgres_to_sqlite(tmp_path: Path, postgres_url: str) -> None:
    _roundtrip(tmp_path, postgres_url, f"sqlite:///{tmp_path / 'b.db'}")
