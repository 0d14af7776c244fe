"""R14-ENT-2: a forger turns a run's signed audit chain into an unsigned "legacy" chain (signatures, positions and
key ids removed, every hash recomputed with the old unsigned formula, the signed head row deleted) after editing
an entry. `_verify_chain` accepts an all-unsigned chain with no head, so:

* `sampan.runtime.backup.restore` commits the forged archive even with the coordinator's audit key PINNED
  (`public_keys`), and the restored store's `verify_audit` (pinned) reports no problem;
* `sampan.runtime.audit_export.verify_jsonl` passes an edited SIEM export, pinned key and all.

Both docstrings claim a pinned key catches a forged or edited audit log."""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _store_fill import fill  # noqa: E402

from sampan.runtime.audit_chain import GENESIS, _event_hash  # noqa: E402
from sampan.runtime.audit_export import jsonl_lines, verify_jsonl  # noqa: E402
from sampan.runtime.backup import BackupError, backup, restore  # noqa: E402
from sampan.runtime.store import Store  # noqa: E402


def _genuine_key(url: str) -> bytes:
    store = Store.open(url)
    try:
        lines = [json.loads(line) for line in jsonl_lines(store)]
    finally:
        store.close()
    (key,) = [bytes.fromhex(r["public_key"]) for r in lines if r["type"] == "key"]
    return key


def _downgrade(rows: list[dict[str, Any]]) -> None:
    """Edit, then re-chain as unsigned legacy entries (per run, in order)."""
    prev: dict[str, str] = {}
    for row in rows:
        if row["kind"] == "approved":
            row["detail"]["by"] = "bank_x"  # the edit the forger wants
        p = prev.get(row["run_id"], GENESIS)
        row.update(prev_hash=p, signature=None, key_id=None, seq=None, hash=_event_hash(p, row["kind"], row["detail"]))
        prev[row["run_id"]] = row["hash"]


def test_restore_refuses_a_chain_stripped_of_its_signatures(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    fill(source)
    key = _genuine_key(source)
    archive, forged = tmp_path / "store.backup", tmp_path / "forged.backup"
    backup(source, archive)
    with zipfile.ZipFile(archive) as z:
        manifest = json.loads(z.read("manifest.json"))
        files = {i.filename: z.read(i.filename) for i in z.infolist()}
    for entry in manifest["tables"]:
        names = [c["name"] for c in entry["columns"]]
        rows = [dict(zip(names, json.loads(line), strict=True)) for line in files[entry["file"]].splitlines()]
        if entry["name"] == "sampan_events":
            _downgrade(rows)
        elif entry["name"] == "sampan_audit_heads":
            rows = []
        else:
            continue
        data = "".join(json.dumps([r[n] for n in names]) + "\n" for r in rows).encode()
        files[entry["file"]] = data
        entry.update(rows=len(rows), sha256=hashlib.sha256(data).hexdigest())
    files["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(forged, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)

    target = f"sqlite:///{tmp_path / 'b.db'}"
    try:
        restore(forged, target, public_keys=[key])
    except BackupError:
        return  # the claim holds
    store = Store.open(target)
    try:
        report = store.verify_audit(public_keys=[key])
    finally:
        store.close()
    assert not report.ok, "a forged (edited, signature-stripped) audit log restored and verifies under the pinned key"


def test_pinned_export_verification_refuses_a_stripped_chain(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    fill(source)
    key = _genuine_key(source)
    store = Store.open(source)
    try:
        records = [json.loads(line) for line in jsonl_lines(store)]
    finally:
        store.close()
    assert not verify_jsonl([json.dumps(r) for r in records], [key])  # the genuine export verifies
    events = [r for r in records if r["type"] == "event"]
    _downgrade(events)
    forged = [json.dumps(r) for r in records if r["type"] != "head"]
    assert verify_jsonl(forged, [key]), "an edited export verifies under the pinned audit key"
