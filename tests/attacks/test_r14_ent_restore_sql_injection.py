"""R14-ENT-4: a forged backup archive runs its own SQL in the restoring database (PostgreSQL). Restore creates the
archive's tables from the manifest's portable definitions, then `_advance_sequences` pastes every single-integer
primary key's column name into `SELECT setval(...) ... MAX("<column>") ...` with an f-string: a column name with a
double quote closes the identifier. Here the injected call makes a large object (persisting after the commit); as
the database superuser that usually runs restores, `lo_export`/`pg_read_file` in its place write or read files on
the database server. The manifest needs no valid data and no audit log for the restore to commit."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from sampan.runtime.backup import FORMAT, VERSION, BackupError, restore

# <= 63 bytes (PostgreSQL's identifier limit): closes the MAX("...") the statement opened, calls a function of the
# attacker's choice, supplies its own FROM and comments out the rest of the statement
COLUMN = "a\"),1),false),lo_from_bytea(4242,'pwned')FROM(SELECT 1\"a\")s--"


def _archive(path: Path) -> None:
    table = {"name": "t", "columns": [{"name": COLUMN, "type": "integer", "nullable": False}],
             "primary_key": [COLUMN], "foreign_keys": [], "indexes": [], "file": "tables/t.jsonl", "rows": 0,
             "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("manifest.json", json.dumps({"format": FORMAT, "version": VERSION, "tables": [table]}))
        z.writestr("tables/t.jsonl", b"")


@pytest.mark.postgres
def test_forged_archive_cannot_run_sql_at_restore(tmp_path: Path, postgres_url: str) -> None:
    assert len(COLUMN.encode()) <= 63
    archive = tmp_path / "forged.backup"
    _archive(archive)
    try:
        restore(archive, postgres_url)
    except BackupError:
        pass  # refusing the archive is fine; what matters is that none of its SQL ran
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            ran = conn.execute(text("SELECT count(*) FROM pg_largeobject_metadata WHERE oid = 4242")).scalar()
    finally:
        engine.dispose()
    assert ran == 0, "the archive's SQL ran in the restoring database (large object 4242 was created)"
