"""ATTACK on store restore (sampan.runtime.backup): someone rewrites an audit entry in a backup archive AND
recomputes the manifest's SHA-256 so the archive is self-consistent. The restore re-verifies every audit chain
(hashes, positions, Ed25519 signatures, signed heads) inside its transaction and refuses, leaving no rows."""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _store_fill import fill as _fill  # noqa: E402

from sampan.runtime.backup import BackupError, backup, restore  # noqa: E402


def test_forged_audit_entry_is_refused_even_with_a_consistent_manifest(tmp_path: Path) -> None:
    """Someone rewrites an audit entry AND recomputes the manifest's hash: the chain check at restore refuses."""
    source = f"sqlite:///{tmp_path / 'a.db'}"
    _fill(source)
    archive = tmp_path / "store.backup"
    backup(source, archive)
    with zipfile.ZipFile(archive) as z:
        manifest = json.loads(z.read("manifest.json"))
        events = z.read("tables/sampan_events.jsonl").replace(b"bank_b", b"bank_x")
    for entry in manifest["tables"]:
        if entry["name"] == "sampan_events":
            entry["sha256"] = hashlib.sha256(events).hexdigest()
    forged = tmp_path / "forged.backup"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(forged, "w") as dst:
        for info in src.infolist():
            data = {"manifest.json": json.dumps(manifest).encode(),
                    "tables/sampan_events.jsonl": events}.get(info.filename, src.read(info.filename))
            dst.writestr(info.filename, data)
    target = f"sqlite:///{tmp_path / 'b.db'}"
    with pytest.raises(BackupError, match="audit log does not verify"):
        restore(forged, target)
    engine = create_engine(target)
    with engine.connect() as conn:  # the transaction rolled back: tables (if any) hold no rows
        for name in inspect(engine).get_table_names():
            assert conn.execute(text(f'SELECT COUNT(*) FROM "{name}"')).scalar() == 0
    engine.dispose()


