"""The audit log's hash chain and signatures: entry hashes, the coordinator's Ed25519 key, verification.

Every event of a run is one link of a hash chain (each entry's hash covers the previous hash, its
position, time, kind and detail) and is signed with the coordinator's Ed25519 key; a signed head per
run names the last entry, so deleting entries from the end is caught too. `verify_chain` recomputes
one run's chain and names the first bad entry. Storage (rows, transactions) is `sampan.runtime.store`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sampan.runtime.errors import StoreError

GENESIS = "0" * 64


class _Entry(Protocol):
    id: int
    kind: str
    detail: Any
    prev_hash: str
    hash: str
    seq: int | None
    at: datetime
    key_id: str | None
    signature: str | None


class _Head(Protocol):
    """Read-only view of a stored head (read-only so a row typed `str` satisfies `str | None`)."""

    @property
    def seq(self) -> int: ...
    @property
    def hash(self) -> str: ...
    @property
    def key_id(self) -> str | None: ...
    @property
    def signature(self) -> str | None: ...


@dataclass(frozen=True)
class AuditProblem:
    run_id: str
    position: int          # 1-based position in the run's chain (0: the run as a whole)
    event_id: int | None
    kind: str | None
    reason: str

    def __str__(self) -> str:
        where = f"entry {self.position}" + (f" (id {self.event_id}, {self.kind})" if self.event_id is not None else "")
        return f"run {self.run_id}: {where if self.position else 'chain'}: {self.reason}"


@dataclass(frozen=True)
class AuditReport:
    """Result of `Store.verify_audit`: counts, heads, and the problems found (first bad entry per run)."""

    runs: int
    entries: int
    signed: int
    legacy: int
    key_ids: list[str]
    pinned: bool
    heads: dict[str, tuple[int, str]]
    problems: list[AuditProblem]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad(self) -> AuditProblem | None:
        return self.problems[0] if self.problems else None


class AuditSigner:
    """The coordinator's Ed25519 signing key for the audit log, kept in a 0600 PEM file."""

    def __init__(self, private: Ed25519PrivateKey, path: Path | None = None) -> None:
        self.private, self.path = private, path
        self.public_raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = key_id(self.public_raw)

    @classmethod
    def load_or_create(cls, path: Path) -> AuditSigner:
        path = Path(path).expanduser()
        if path.exists():
            return cls(_load_private_key(path), path)
        path.parent.mkdir(parents=True, exist_ok=True)
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        from sampan.files import create_exclusive_bytes

        if not create_exclusive_bytes(path, pem):  # another process made it first: use theirs (complete)
            return cls(_load_private_key(path), path)
        return cls(private, path)

    def sign(self, message: bytes) -> str:
        return self.private.sign(message).hex()


def key_id(public_raw: bytes) -> str:
    """Fingerprint of an audit public key: the first 16 bytes of its SHA-256, hex."""
    return hashlib.sha256(public_raw).hexdigest()[:32]


def _load_private_key(path: Path) -> Ed25519PrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise StoreError(f"audit signing key {str(path)!r} is readable by others (mode {mode:o}); chmod 600 it")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise StoreError(f"{str(path)!r} is not an Ed25519 private key")
    return key


def load_public_key(value: str | Path) -> bytes:
    """A trusted audit public key: 64 hex characters, or a PEM file (public or private key)."""
    text_value = str(value).strip()
    if len(text_value) == 64 and all(c in "0123456789abcdefABCDEF" for c in text_value):
        return bytes.fromhex(text_value)
    path = Path(text_value).expanduser()
    if not path.exists():
        raise StoreError(f"audit public key {text_value!r} is neither 64 hex characters nor a file")
    data = path.read_bytes()
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        key = serialization.load_pem_private_key(data, password=None).public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise StoreError(f"{text_value!r} is not an Ed25519 key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def default_audit_key_path(url: str) -> Path | None:
    """Where a store's signing key lives unless told: next to a SQLite file, else in the user's config."""
    if os.environ.get("SAMPAN_AUDIT_KEY"):
        return Path(os.environ["SAMPAN_AUDIT_KEY"]).expanduser()
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url.removeprefix("sqlite:///") + ".audit-key.pem").expanduser()
    if url.startswith("sqlite"):
        return None  # in-memory store: an in-memory key
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "sampan" / "audit-keys"
    return base / (hashlib.sha256(url.encode()).hexdigest()[:16] + ".pem")


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _iso_utc(at: datetime) -> str:
    if at.tzinfo is None:  # SQLite hands back naive datetimes; they were written in UTC
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _signed_event_hash(run_id: str, seq: int, at: datetime, prev: str, kind: str, detail: Any) -> str:
    body = {"v": 2, "run": run_id, "seq": seq, "at": _iso_utc(at), "prev": prev, "kind": kind, "detail": detail}
    return hashlib.sha256(_canonical(body)).hexdigest()


def _event_message(digest: str) -> bytes:
    return b"sampan-audit-entry-v2\n" + digest.encode()


def _head_message(run_id: str, seq: int, digest: str) -> bytes:
    return f"sampan-audit-head-v2\n{run_id}\n{seq}\n{digest}".encode()


def _check_signature(keys: Mapping[str, bytes], key: str | None, signature: str | None, message: bytes) -> str | None:
    """None if `signature` verifies under the trusted key `key`, else why not."""
    if key is None or key not in keys:
        return f"signed by key {key!r}, which is not trusted"
    try:
        Ed25519PublicKey.from_public_bytes(keys[key]).verify(bytes.fromhex(signature or ""), message)
    except (InvalidSignature, ValueError):
        return "the signature does not verify (entry edited and re-hashed?)"
    return None


def _verify_chain(run_id: str, rows: Sequence[_Entry], head: _Head | None, keys: Mapping[str, bytes], *,
                  require_head: bool = False) -> tuple[AuditProblem | None, int, list[str]]:
    """(first problem, signed entries, the chain's hashes) for one run's entries in storage order.

    `require_head` (set when the trusted keys are pinned): a run with entries must end in a head signed by a
    trusted key. Why: unsigned (pre-signing) entries verify only by their hashes, which anyone can recompute;
    a forger who strips a chain's signatures, edits it, re-hashes it and deletes its head would otherwise pass
    (R14-ENT-2). A signed head covers the last hash, which covers every entry before it, an unsigned legacy
    prefix included; a chain that was never signed cannot be vouched for by a pinned key and is reported."""
    prev, signed, seen_signed = GENESIS, 0, False
    chain: list[str] = []
    for position, row in enumerate(rows, start=1):
        def bad(reason: str, position: int = position, row: _Entry = row,
                signed: int = signed) -> tuple[AuditProblem, int, list[str]]:
            return AuditProblem(run_id, position, row.id, row.kind, reason), signed, chain
        if row.prev_hash != prev:
            return bad("does not follow the entry before it (an entry was deleted, inserted or reordered)")
        if row.signature is None:
            if seen_signed:
                return bad("unsigned entry after signed ones (signature stripped, or entry forged)")
            if row.hash != _event_hash(prev, row.kind, row.detail):
                return bad("its content does not match its hash (edited)")
        else:
            seen_signed = True
            if row.seq != position:
                return bad(f"claims position {row.seq} but is at {position} (entries deleted or reordered)")
            if row.hash != _signed_event_hash(run_id, position, row.at, prev, row.kind, row.detail):
                return bad("its content does not match its hash (edited)")
            why = _check_signature(keys, row.key_id, row.signature, _event_message(row.hash))
            if why:
                return bad(why)
            signed += 1
        prev = row.hash
        chain.append(row.hash)
    last = len(chain)
    if head is None:
        if signed:
            return AuditProblem(run_id, last, None, None, "the signed head of the chain is missing"), signed, chain
        if require_head and last:
            return AuditProblem(run_id, last, None, None, "unsigned chain without a signed head (written before "
                                "signing, or stripped of its signatures and re-hashed): the pinned key cannot "
                                "vouch for it"), signed, chain
        return None, signed, chain
    why = _check_signature(keys, head.key_id, head.signature, _head_message(run_id, head.seq, head.hash))
    if why:
        return AuditProblem(run_id, last, None, None, f"chain head: {why}"), signed, chain
    if head.seq != last or (last and head.hash != chain[-1]):
        return AuditProblem(run_id, min(head.seq, last + 1), None, None,
                            f"the signed head names entry {head.seq} ({head.hash[:12]}…) but the chain has {last} "
                            "entries: entries were deleted from the end (truncated)"), signed, chain
    return None, signed, chain


def _export_message(at: str, heads: Mapping[str, Sequence[Any]]) -> bytes:
    """What an export's manifest signs: when, and every run's (entries, last hash) in that export."""
    return b"sampan-audit-export-v1\n" + _canonical({"at": at, "heads": {k: list(v) for k, v in heads.items()}})


def _event_hash(prev: str, kind: str, detail: Mapping[str, Any]) -> str:
    body = json.dumps({"prev": prev, "kind": kind, "detail": detail}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()
