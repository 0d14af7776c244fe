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
set U3 (with the neighbour graph's digest) of the first attempt for which it revealed unmask shares: a
later attempt of the same round (or on the same model) with another U3 or another graph gets no unmask
shares, so a coordinator cannot unmask the sums over U and over U minus v and read v's input as their
difference. The lock is written before the shares leave.

Across rounds and runs (`vector_key`): a `RoundRecord` keyed `vector:<HMAC>` — an HMAC, under a key
the store keeps for the party (`lock_key`), of the encoded vector it masked (and of its unweighted
content) — binds an identical input to the first U3 it was unmasked for, whatever round, model digest or
run the coordinator names. These records carry no run prefix and `close_run` never deletes them; each
is an HMAC, a survivor list and nothing else (the vectors themselves are cached per run and deleted
with it, and only the run's latest round keeps its cached vector: `prune_vectors`). Likewise a record keyed
`model:<HMAC>` (`model_key`) binds the public model an input is computed from to the first U3 any input on
it was unmasked for, under any settings, in any run (review R11: a learning rate or a binning rescales or
coarsens every input by a known map, so locking the bytes alone is not enough).

Each change is written (atomically, 0600, fsynced) *before* the answer that depends on it leaves the
party, and records are never evicted within a run, so a party restarted mid-run still refuses what it
refused before. `FileStateStore` is the deployment store (a folder under the party's state dir);
`MemoryStateStore` serves in-process simulations whose parties live as long as the run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from sampan.files import PRIVATE_FILE, atomic_write_bytes, private_directory

__all__ = ["LabelRecord", "RoundRecord", "SecAggStateStore", "MemoryStateStore", "FileStateStore", "close_run",
           "closed_key", "vector_key", "prune_vectors"]


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
    edges: dict[str, list[str]] | None = None  # that graph itself: U3 must be connected inside it
    peers: list[str] | None = None  # the neighbours it masked against (every neighbour in U3 must be one)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LabelRecord:
        data = json.loads(raw)
        edges = data.get("edges")
        return cls(label=str(data["label"]), nonce=str(data["nonce"]), keys=str(data["keys"]),
                   holders=data.get("holders"), threshold=data.get("threshold"), m_min=data.get("m_min"),
                   masked=bool(data.get("masked")), signed=data.get("signed"),
                   revealed={str(k): str(v) for k, v in (data.get("revealed") or {}).items()},
                   round=data.get("round"), basis=data.get("basis"), rounds=list(data.get("rounds") or []),
                   noise_parties=data.get("noise_parties"), graph=data.get("graph"),
                   edges={str(p): [str(q) for q in v] for p, v in edges.items()} if edges is not None else None,
                   peers=data.get("peers"))


@dataclass
class RoundRecord:
    """A party's state for one round of a run, across all the attempts (labels) of that round.

    `key` is `<run>/round:<id>` or `<run>/basis:<digest>` (or `vector:<HMAC>`, across runs: see the module
    docstring); `vector` is the encoded input (hex of the uint64 ring elements) it masked in the first
    attempt, re-used by every later one; `survivors` the U3 it revealed unmask shares for (None until
    then) and `graph` the digest of the neighbour graph of that unmasking (rounds only); `closed` marks a
    run whose state was deleted."""

    key: str
    vector: str | None = None
    frac_bits: int | None = None
    noise_parties: int | None = None
    survivors: list[str] | None = None
    closed: bool = False
    graph: str | None = None
    cached: list[str] | None = None  # (the run's `<run>/cached` index only) round records holding a vector

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> RoundRecord:
        data = json.loads(raw)
        return cls(key=str(data["key"]), vector=data.get("vector"), frac_bits=data.get("frac_bits"),
                   noise_parties=data.get("noise_parties"), survivors=data.get("survivors"),
                   closed=bool(data.get("closed")), graph=data.get("graph"),
                   cached=data.get("cached"))


class SecAggStateStore(Protocol):
    """Durable per-label records: `save` returns only once the record would survive a crash."""

    def load(self, label: str) -> LabelRecord | None: ...

    def save(self, record: LabelRecord) -> None: ...

    def load_round(self, key: str) -> RoundRecord | None: ...

    def save_round(self, record: RoundRecord) -> None: ...

    def forget_run(self, run_id: str) -> int:
        """Delete every record of `run_id` (labels and rounds start with `<run_id>/`); returns how many."""
        ...

    def lock_key(self) -> bytes:
        """The party's secret key for `vector:` lock names (kept as long as the store: never per run)."""
        ...


class MemoryStateStore:
    """Records in memory: for simulated parties that live exactly as long as the run (never evicted)."""

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._key = os.urandom(32)

    def lock_key(self) -> bytes:
        return self._key

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

    def lock_key(self) -> bytes:
        """32 random bytes in `lock.key` (0600), made at first use and kept across runs and restarts."""
        path = self.directory / "lock.key"
        with self._lock:
            try:
                key = path.read_bytes()
            except FileNotFoundError:
                key = b""
            if len(key) != 32:
                if key:
                    raise ValueError(f"secure aggregation lock key '{path}' is damaged; refusing to answer (restore it "
                                     "from a backup: without it the party forgets which inputs it already unmasked)")
                key = os.urandom(32)
                atomic_write_bytes(path, key, mode=PRIVATE_FILE)
            return key

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


def vector_key(store: SecAggStateStore, what: str, content: bytes) -> str:
    """The cross-run lock name of an input: `vector:` + HMAC-SHA256 under the party's lock key (the name
    reveals nothing of the input to whoever reads the state folder without the key)."""
    tag = hmac.new(store.lock_key(), what.encode() + b"|" + content, hashlib.sha256).hexdigest()
    return f"vector:{tag}"


def model_key(store: SecAggStateStore, basis: str) -> str:
    """The cross-run lock name of a public model (review R11): `model:` + HMAC-SHA256, under the party's lock
    key, of the caller's canonical digest of what its input is computed from (the global model, scaler and
    model config, with the kind of input: fit or evaluate), and of nothing else — not the training or
    evaluation settings, the run or the public weights. Inputs computed from one model under different
    settings can be known linear maps of each other (one step at lr/2 is half the update; a 40-bin histogram
    merges into the 20-bin one), so the model, not the input bytes, is what is bound to one survivor set."""
    tag = hmac.new(store.lock_key(), b"model|" + basis.encode(), hashlib.sha256).hexdigest()
    return f"model:{tag}"


def prune_vectors(store: SecAggStateStore, run_id: str, keep: list[str]) -> None:
    """Bound the per-run cache of masked vectors: only the round being answered keeps its vector. The run's
    index record (`<run>/cached`) names the round records holding one; those not in `keep` drop it (their
    survivor-set locks stay). A coordinator going back to an older round then gets a freshly computed
    input, still bound to that round's U3 (and an identical one to its `vector:` lock)."""
    index = store.load_round(f"{run_id}/cached") or RoundRecord(key=f"{run_id}/cached")
    held = [k for k in (index.cached or []) if k not in keep]
    for key in held:
        record = store.load_round(key)
        if record is not None and record.vector is not None:
            record.vector = None
            store.save_round(record)
    index.cached = sorted(set(keep))
    store.save_round(index)


def close_run(store: SecAggStateStore, run_id: str) -> int:
    """The run is over: delete its records (labels, rounds, cached input vectors) and keep one small marker,
    so the party refuses any later secure aggregation request of that run (a coordinator that closes and
    re-opens a run cannot reset what the party refused). Returns how many records were deleted."""
    gone = store.forget_run(run_id)
    store.save_round(RoundRecord(key=closed_key(run_id), closed=True))
    return gone
