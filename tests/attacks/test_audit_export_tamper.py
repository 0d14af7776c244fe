"""ATTACK on the exported audit log (sampan.runtime.audit_export): whoever handles the JSON-lines export (a log
shipper, the SIEM's storage) edits an entry, drops one from the middle or the end (rewriting the head), reorders
two, or re-signs everything with its own key and swaps the key record. The offline verifier, with the
coordinator's audit key pinned, names the run and the entry each time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sampan.runtime.audit_export import jsonl_lines, verify_jsonl
from sampan.runtime.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    for name in ("fedavg", "vertical"):
        run_id = s.create_run(name=name, workflow="horizontal", seed=3, config={}, total_rounds=1)
        s.log_event(run_id, "approved", {"party": "bank_a", "spec_hash": "ab" * 32})
        s.log_event(run_id, "refused", {"party": "bank_b", "reason": "columns not covered by the approval"})
    yield s
    s.close()


def _public_key(store: Store) -> bytes:
    return store.signer.public_raw


def test_untouched_export_verifies(store: Store) -> None:
    assert verify_jsonl(list(jsonl_lines(store)), [_public_key(store)]) == []


@pytest.mark.parametrize("attack", ["edit", "drop_middle", "drop_last", "reorder", "forge_key"])
def test_tampered_export_is_detected(store: Store, attack: str) -> None:
    lines = list(jsonl_lines(store))
    events = [i for i, line in enumerate(lines) if json.loads(line)["type"] == "event"]
    if attack == "edit":
        lines[events[1]] = lines[events[1]].replace("bank_a", "bank_z")
    elif attack == "drop_middle":
        del lines[events[1]]
    elif attack == "drop_last":  # the last entry of a run, and its head rewritten to match: the signature fails
        record = json.loads(lines[events[2]])
        head_at = next(i for i, line in enumerate(lines) if json.loads(line)["type"] == "head")
        del lines[events[2]]
        head = json.loads(lines[head_at - 1])
        head.update(seq=record["seq"] - 1, hash=record["prev_hash"])
        lines[head_at - 1] = json.dumps(head)
    elif attack == "reorder":
        lines[events[1]], lines[events[2]] = lines[events[2]], lines[events[1]]
    else:  # an editor re-signs an edited entry with its own key and swaps the key record: the pinned key refuses
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from sampan.runtime.audit_chain import AuditSigner

        forger = AuditSigner(Ed25519PrivateKey.generate())
        out = []
        for line in lines:
            record = json.loads(line)
            if record["type"] == "key":
                record.update(key_id=forger.key_id, public_key=forger.public_raw.hex())
            elif record["type"] in ("event", "head"):
                record.update(key_id=forger.key_id, signature="00" * 64)
            out.append(json.dumps(record))
        lines = out
    problems = verify_jsonl(lines, [_public_key(store)])
    assert problems, attack
    assert problems[0].run_id != "?"


