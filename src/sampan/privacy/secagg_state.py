"""What a secure-aggregation party has already done under each label, kept so that it never does it twice.

Why: the coordinator decides what to ask, and a party that answers every request on its own terms can
be led to reveal, for one neighbour, both the share of its self-mask seed (as if it survived) and the
share of its mask key (as if it dropped) — with both secrets the coordinator reads that neighbour's
input. A party therefore keeps, per label (one SecAgg attempt):

- the nonce it drew for the attempt and a digest of the public keys it advertised;
- whom it gave Shamir shares to, and the threshold (it masks only against those, and only enough of them);
- whether it masked an input (never a second one under the same keys);
- the survivor set it signed in the consistency round (never a different one);
- per neighbour, which kind of share it revealed ("b" or "s"; never the other);
- the round it was told the attempt belongs to, the digest of the public inputs its vector is a function
  of (the global model), the digest of the neighbour graph it shared under, and the number of noise
  shares its vector assumes (`noise_parties`).

Per round of a run (`RoundRecord`, keyed by the round's identity and, separately, by the model's digest),
it keeps the input vector it masked for the round (re-used, bit for bit, by every retry) and the survivor
set U3 of the first attempt for which it revealed unmask shares: a later attempt of the same round (or
on the same model) with another U3 gets no unmask shares, so a coordinator cannot unmask the sums over U
and over U minus v and read v's input as their difference. The lock is written before the shares leave.

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

__all__ = ["LabelRecord", "RoundRecord", "SecAggStateStore", "MemoryStateStore", "FileStateStore", "close_run",
           "closed_key"]


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
    round: str | None = None  # the round identity the attempt was bound to when it masked (signed with U3)
    basis: str | None = None  # digest of the public inputs its vector is a function of (signed with U3)
    rounds: list[str] = field(default_factory=list)  # keys of the RoundRecords this attempt is bound to
    noise_parties: int | None = None  # noise shares its vector assumes: unmask needs that many signers
    graph: str | None = None  # digest of the (checked regular) neighbour graph it shared under (signed with U3)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "LabelRecord":
        data = json.loads(raw)
        return cls(label=str(data["label"]), nonce=str(data["nonce"]), keys=str(data["keys"]),
                   holders=data.get("holders"), threshold=data.get("threshold"), m_min=data.get("m_min"),
                   masked=bool(data.get("masked")), signed=data.get("signed"),
                   revealed={str(k): str(v) for k, v in (data.get("revealed") or {}).items()},
                   round=data.get("round"), basis=data.get("basis"), rounds=list(data.get("rounds") or []),
                   noise_parties=data.get("noise_parties"), graph=data.get("graph"))


@dataclass
class RoundRecord:
    """A party's state for one round of a run, across all the attempts (labels) of that round.

    `key` is `<run>/round:<id>` or `<run>/basis:<digest>`; `vector` is the encoded input (hex of the
    uint64 ring elements) it masked in the first attempt, re-used by every later one; `survivors` the U3
    it revealed unmask shares for (None until then); `closed` marks a run whose state was deleted."""

    key: str
    vector: str | None = None
    frac_bits: int | None = None
    noise_parties: int | None = None
    survivors: list[str] | None = None
    closed: bool = False

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "RoundRecord":
        data = json.loads(raw)
        return cls(key=str(data["key"]), vector=data.get("vector"), frac_bits=data.get("frac_bits"),
                   noise_parties=data.get("noise_parties"), survivors=data.get("survivors"),
                   closed=bool(data.get("closed")))


class SecAggStateStore(Protocol):
    """Durable per-label records: `save` returns only once the record would survive a crash."""

    def load(self, label: str) -> LabelRecord | None: ...

    def save(self, record: LabelRecord) -> None: ...

    def load_round(self, key: str) -> RoundRecord | None: ...

    def save_round(self, record: RoundRecord) -> None: ...

    def forget_run(self, run_id: str) -> int:
        """Delete every record of `run_id` (labels and rounds start with `<run_id>/`); returns how many."""
        ...


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

    def load_round(self, key: str) -> RoundRecord | None:
        with self._lock:
            raw = self._records.get(f"round|{key}")
        return RoundRecord.from_json(raw) if raw is not None else None

    def save_round(self, record: RoundRecord) -> None:
        with self._lock:
            self._records[f"round|{record.key}"] = record.to_json()

    def forget_run(self, run_id: str) -> int:
        with self._lock:
            gone = [k for k in self._records if k.removeprefix("round|").startswith(f"{run_id}/")]
            for k in gone:
                del self._records[k]
        return len(gone)


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

    def _round_path(self, key: str) -> Path:
        return self.directory / f"round-{hashlib.sha256(key.encode()).hexdigest()[:40]}.json"

    def load_round(self, key: str) -> RoundRecord | None:
        path = self._round_path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            record = RoundRecord.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"secure aggregation state file '{path}' is unreadable ({exc}); refusing to answer "
                             "in its round") from None
        if record.key != key:
            raise ValueError(f"secure aggregation state file '{path}' belongs to another round")
        return record

    def save_round(self, record: RoundRecord) -> None:
        with self._lock:
            atomic_write_bytes(self._round_path(record.key), record.to_json(), mode=PRIVATE_FILE)

    def forget_run(self, run_id: str) -> int:
        """Delete the run's files (each file names its label or round key, which starts with `<run_id>/`)."""
        gone = 0
        with self._lock:
            for path in sorted(self.directory.glob("*.json")):
                try:
                    data = json.loads(path.read_bytes())
                except (OSError, ValueError):
                    continue
                name = str(data.get("label") or data.get("key") or "") if isinstance(data, dict) else ""
                if name.startswith(f"{run_id}/"):
                    path.unlink(missing_ok=True)
                    gone += 1
        return gone


def closed_key(run_id: str) -> str:
    return f"{run_id}/closed"


def close_run(store: SecAggStateStore, run_id: str) -> int:
    """The run is over: delete its records (labels, rounds, cached input vectors) and keep one small marker,
    so the party refuses any later secure aggregation request of that run (a coordinator that closes and
    re-opens a run cannot reset what the party refused). Returns how many records were deleted."""
    gone = store.forget_run(run_id)
    store.save_round(RoundRecord(key=closed_key(run_id), closed=True))
    return gone
