"""A party's own consent records: the approvals it signed and the standing rules it holds, under its state folder.

Each approval is one file (<state_dir>/consent/approvals/<spec hash>.json, 0600, written atomically); the
rules added beside `[allow]` (locally, or through the console when the party accepts relayed decisions)
are one file, rules.json. Where each approved job stands (opened, closed, released) is one small file per
job (<state_dir>/consent/jobs/<sha256 of the job id>.json): a closed job id is never admitted again (one
approval, one run: review R14-CONSENT-7) and a released approval is moved to approvals/void/ (kept, never
honoured). Nothing here is ever read from the coordinator: the agent trusts only what it wrote itself.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from pathlib import Path

from sampan.deploy.consent.approval import Approval
from sampan.deploy.consent.rules import StandingRule
from sampan.files import atomic_write_bytes, private_directory

__all__ = ["ConsentStore"]

_HASH = re.compile(r"[0-9a-f]{64}")


class ConsentStore:
    def __init__(self, state_dir: str | Path) -> None:
        self.root = Path(state_dir) / "consent"
        self._lock = threading.Lock()

    def _ready(self) -> None:
        private_directory(self.root.parent)
        private_directory(self.root)
        private_directory(self.root / "approvals")
        private_directory(self.root / "jobs")

    def approval(self, spec_hash: str) -> Approval | None:
        """This party's own approval of the spec with this hash, if it gave one."""
        if not _HASH.fullmatch(spec_hash):
            return None
        path = self.root / "approvals" / f"{spec_hash}.json"
        if not path.exists():
            return None
        return Approval.model_validate_json(path.read_text())

    def save_approval(self, approval: Approval) -> Approval:
        """Keep the approval; the first one of a spec stays (a second decision returns the first)."""
        with self._lock:
            self._ready()
            existing = self.approval(approval.spec_hash)
            if existing is not None:
                return existing
            atomic_write_bytes(self.root / "approvals" / f"{approval.spec_hash}.json",
                               approval.model_dump_json().encode(), mode=0o600)
            return approval

    def void_approval(self, spec_hash: str) -> bool:
        """Withdraw this party's approval of a spec (moved to approvals/void/, never honoured again). True if
        there was one."""
        if not _HASH.fullmatch(spec_hash):
            return False
        with self._lock:
            path = self.root / "approvals" / f"{spec_hash}.json"
            if not path.exists():
                return False
            private_directory(self.root / "approvals" / "void")
            path.replace(self.root / "approvals" / "void" / f"{spec_hash}.{time.time_ns()}.json")
            return True

    # --- where each approved job stands ------------------------------------------------------------------
    def _job_path(self, job_id: str) -> Path:
        return self.root / "jobs" / f"{hashlib.sha256(job_id.encode()).hexdigest()}.json"

    def job_state(self, job_id: str) -> str | None:
        """"opened" (admitted at least once), "closed" (settled: never admitted again), "released" (withdrawn
        before it started), or None (approved at most, never opened)."""
        record = self.job_record(job_id)
        return None if record is None else str(record.get("state"))

    def job_record(self, job_id: str) -> dict[str, object] | None:
        """The job's state record: state, the spec hash it was approved/opened under and the granting rule id
        (review R14-CONSENT2-3/4: a job id is bound to one spec; an approval to the rule that granted it)."""
        path = self._job_path(job_id)
        if not path.exists():
            return None
        record = json.loads(path.read_text())
        return record if isinstance(record, dict) and record.get("job_id") == job_id else None

    def set_job_state(self, job_id: str, state: str, *, spec_hash: str | None = None,
                      rule: str | None = None) -> None:
        """Record where the job stands; the spec hash and granting rule carry over unless given anew."""
        with self._lock:
            self._ready()
            old = self.job_record(job_id) or {}
            record = {"job_id": job_id, "state": state, "at": time.time(),
                      "spec_hash": spec_hash if spec_hash is not None else old.get("spec_hash"),
                      "rule": rule if spec_hash is not None else old.get("rule")}
            atomic_write_bytes(self._job_path(job_id), json.dumps(record).encode(), mode=0o600)

    def approvals(self) -> list[Approval]:
        folder = self.root / "approvals"
        if not folder.is_dir():
            return []
        return [Approval.model_validate_json(p.read_text()) for p in sorted(folder.glob("*.json"))]

    def rules(self) -> list[StandingRule]:
        path = self.root / "rules.json"
        if not path.exists():
            return []
        return [StandingRule.model_validate(r) for r in json.loads(path.read_text())]

    def remove_rule(self, rule_id: str) -> StandingRule | None:
        """Drop the standing rule `rule_id` (the removed rule; None when the party holds none by that id)."""
        with self._lock:
            rules = self.rules()
            gone = next((r for r in rules if r.id == rule_id), None)
            if gone is not None:
                self._ready()
                atomic_write_bytes(self.root / "rules.json", json.dumps(
                    [r.model_dump(mode="json") for r in rules if r.id != rule_id]).encode(), mode=0o600)
        return gone

    def add_rule(self, rule: StandingRule) -> StandingRule:
        """Add (or replace, by id) a standing rule; `allow` is reserved for party.toml's [allow]."""
        if rule.id == "allow":
            raise ValueError("rule id 'allow' is party.toml's [allow] section; choose another id")
        with self._lock:
            self._ready()
            rules = [r for r in self.rules() if r.id != rule.id] + [rule]
            atomic_write_bytes(self.root / "rules.json",
                               json.dumps([r.model_dump(mode="json") for r in rules]).encode(), mode=0o600)
        return rule
