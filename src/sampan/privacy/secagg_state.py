"""What a secure-aggregation party has already done under each label, kept so that it never does it twice.

Why: the coordinator decides what to ask, and a party that answers every request on its own terms can
be led to reveal, for one neighbour, both the share of its self-mask seed (as if it survived) and the
share of its mask key (as if it dropped) — with both secrets the coordinator reads that neighbour's
input. A party therefore keeps, per label (one SecAgg attempt):

- the nonce it drew for the attempt and a digest of the public keys it advertised;
- whom it gave Shamir shares to, and the threshold (it masks only against those, and only enough of them);
- whether it masked an input (never a second one under the same keys);
- the survivor set it signed in the consistency round (never a different one);
- per neighbour, which kind of share it revealed ("b" or "s"; never the other).

Each change is written (atomically, 0600, fsynced) *before* the answer that depends on it leaves the
party, and records are never evicted within a run, so a party restarted mid-run still refuses what it
refused before. `FileStateStore` is the deployment store (a folder under the party's state dir);
`MemoryStateStore` serves in-process simulations whose parties live as long as the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from sampan.files import PRIVATE_FILE, atomic_write_bytes, private_directory

__all__ = ["LabelRecord", "SecAggStateStore", "MemoryStateStore", "FileStateStore"]


@dataclass
class LabelRecord:
    """A party's state for one label (see the module docstring)."""

    label: str
    nonce: str  # hex, drawn by the party at its first advertisement under this label
    keys: str  # hex SHA-256 of the public keys it advertised
    holders: list[str] | None = None  # who it gave shares to, and how many of them rebuild a secret
    threshold: int | None = None
    m_min: int | None = None  # the least survivor count it accepts, fixed when it shares (before any dropout)
    masked: bool = False
    signed: list[str] | None = None  # the survivor set U3 it signed
    revealed: dict[str, str] = field(default_factory=dict)  # neighbour -> "b" or "s"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "LabelRecord":
        data = json.loads(raw)
        return cls(label=str(data["label"]), nonce=str(data["nonce"]), keys=str(data["keys"]),
                   holders=data.get("holders"), threshold=data.get("threshold"), m_min=data.get("m_min"),
                   masked=bool(data.get("masked")), signed=data.get("signed"),
                   revealed={str(k): str(v) for k, v in (data.get("revealed") or {}).items()})


class SecAggStateStore(Protocol):
    """Durable per-label records: `save` returns only once the record would survive a crash."""

    def load(self, label: str) -> LabelRecord | None: ...

    def save(self, record: LabelRecord) -> None: ...


class MemoryStateStore:
    """Records in memory: for simulated parties that live exactly as long as the run (never evicted)."""

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def load(self, label: str) -> LabelRecord | None:
        with self._lock:
            raw = self._records.get(label)
        return LabelRecord.from_json(raw) if raw is not None else None

    def save(self, record: LabelRecord) -> None:
        with self._lock:
            self._records[record.label] = record.to_json()


class FileStateStore:
    """One JSON file per label in `directory` (created 0700; files 0600, written atomically and fsynced)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = private_directory(directory)
        self._lock = threading.Lock()

    def _path(self, label: str) -> Path:
        return self.directory / f"{hashlib.sha256(label.encode()).hexdigest()[:40]}.json"

    def load(self, label: str) -> LabelRecord | None:
        path = self._path(label)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            record = LabelRecord.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"secure aggregation state file '{path}' is unreadable ({exc}); refusing to answer "
                             "under its label") from None
        if record.label != label:
            raise ValueError(f"secure aggregation state file '{path}' belongs to another label")
        return record

    def save(self, record: LabelRecord) -> None:
        with self._lock:
            atomic_write_bytes(self._path(record.label), record.to_json(), mode=PRIVATE_FILE)
