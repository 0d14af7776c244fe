"""R14-ENT-6: whoever handles the SIEM exports (a log shipper, the SIEM's storage) keeps every export, and every
export carries each run's signed head. Dropping the newest entries of a run from today's export and putting back
the head from an earlier export passes `verify_jsonl` with the coordinator's audit key PINNED: a head says only
"the chain ends at entry n with hash h", not when, so an older head is as good as the current one. The module
docstring (and docs/deploy.md §9.3) say a line dropped from the end of a run is caught by the signed head."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _store_fill import fill  # noqa: E402

from sampan.runtime.audit_export import jsonl_lines, verify_jsonl  # noqa: E402
from sampan.runtime.store import Store  # noqa: E402


def _export(url: str) -> list[dict]:  # type: ignore[type-arg]
    store = Store.open(url)
    try:
        return [json.loads(line) for line in jsonl_lines(store)]
    finally:
        store.close()


def test_truncated_export_with_an_earlier_head_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    run_id = fill(url)
    yesterday = _export(url)
    store = Store.open(url)
    try:
        store.log_event(run_id, "model_exported", {"by": "bank_b", "to": "outside the consortium"})
    finally:
        store.close()
    today = _export(url)
    (key,) = [bytes.fromhex(r["public_key"]) for r in today if r["type"] == "key"]
    assert not verify_jsonl([json.dumps(r) for r in today], [key])

    old_head = next(r for r in yesterday if r["type"] == "head" and r["run_id"] == run_id)
    last = max(r["seq"] for r in today if r["type"] == "event" and r["run_id"] == run_id)
    forged = [r for r in today if r.get("run_id") != run_id or (r["type"] == "event" and r["seq"] != last)]
    forged.append(old_head)
    assert any(r["type"] == "event" and r["kind"] == "model_exported" for r in today)
    assert not any(r["type"] == "event" and r["kind"] == "model_exported" for r in forged)
    assert verify_jsonl([json.dumps(r) for r in forged], [key]), \
        "the export verifies with the run's last entry dropped (an earlier signed head put back)"
