"""The signed audit log exported for a SIEM: JSON lines (verifiable offline) or RFC 5424 syslog messages.

Why: a bank's security team keeps its own copy of who approved, ran and refused what, outside the
coordinator's database. JSON lines carry every field the chain needs, so `verify_jsonl` re-checks the
export on a machine that never saw the store: each entry's hash (previous hash, position, time, kind,
detail), its Ed25519 signature, and each run's signed head (so a line dropped from the end of a run is
caught too). Syslog messages (RFC 5424, structured data `sampan@32473`) carry the same fields for a
collector that indexes them; over TCP they are framed by octet counting (RFC 6587), over UDP one per
datagram.

Threat model: whoever handles the export (a log shipper, the SIEM's storage) may edit, drop, reorder or
insert lines. With the coordinator's audit public key pinned (`public_keys`, from `sampan audit-log
verify` output or the key file), any such change to a run's entries is reported naming the run and the
entry; the key lines inside an export are only a convenience and are not trusted unless pinned. Not
covered: dropping a whole run (anchor the heads, as `sampan audit-log verify --write-anchor` does).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import select

from sampan.runtime.audit_chain import AuditProblem, _iso_utc, _verify_chain, key_id
from sampan.runtime.errors import StoreError
from sampan.runtime.store import AuditHeadRow, AuditKeyRow, EventRow, Store

__all__ = ["Format", "export_lines", "jsonl_lines", "syslog_messages", "verify_jsonl", "send", "SD_ID"]

Format = Literal["jsonl", "syslog"]
SD_ID = "sampan@32473"  # 32473: the private enterprise number RFC 5612 reserves for examples and documentation
_PRI = 13 * 8 + 5  # facility 13 (log audit), severity 5 (notice)
_VERSION = 1


def _records(store: Store) -> Iterator[dict[str, Any]]:
    """Every key, then every run's entries in chain order followed by its signed head."""
    with store._session() as s:
        for k in s.scalars(select(AuditKeyRow).order_by(AuditKeyRow.key_id)):
            yield {"v": _VERSION, "type": "key", "key_id": k.key_id, "public_key": k.public_key}
        heads = {h.run_id: h for h in s.scalars(select(AuditHeadRow))}
        run_ids = sorted(set(s.scalars(select(EventRow.run_id).distinct())) | set(heads))
    for run_id in run_ids:
        for row in store.events(run_id):
            yield {"v": _VERSION, "type": "event", "run_id": run_id, "id": row.id, "seq": row.seq,
                   "at": _iso_utc(row.at), "kind": row.kind, "detail": row.detail, "prev_hash": row.prev_hash,
                   "hash": row.hash, "key_id": row.key_id, "signature": row.signature}
        head = heads.get(run_id)
        if head is not None:
            yield {"v": _VERSION, "type": "head", "run_id": run_id, "seq": head.seq, "hash": head.hash,
                   "key_id": head.key_id, "signature": head.signature}


def jsonl_lines(store: Store) -> Iterator[str]:
    """One JSON object per line (no trailing newline): key, event and head records."""
    for record in _records(store):
        yield json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sd_value(value: object) -> str:
    """An RFC 5424 PARAM-VALUE: '"', '\\' and ']' escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_messages(store: Store, *, hostname: str | None = None, app_name: str = "sampan") -> Iterator[str]:
    """RFC 5424 messages, one per audit entry (heads and keys ride along as their own messages)."""
    host = (hostname or socket.gethostname() or "-").replace(" ", "_")[:255]
    for record in _records(store):
        kind = record["type"]
        params = {k: v for k, v in record.items() if k not in ("detail", "v") and v is not None}
        sd = SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in sorted(params.items()))
        if kind == "event":
            msgid, timestamp = "audit", record["at"]
            msg = json.dumps(record["detail"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        else:
            msgid, timestamp, msg = f"audit-{kind}", "-", ""
        text = f"<{_PRI}>1 {timestamp} {host} {app_name} - {msgid} [{sd}]"
        yield text + (" \ufeff" + msg if msg else "")  # BOM: the MSG is UTF-8 (RFC 5424 section 6.4)


def export_lines(store: Store, fmt: Format) -> Iterator[str]:
    if fmt == "jsonl":
        return jsonl_lines(store)
    if fmt == "syslog":
        return syslog_messages(store)
    raise StoreError(f"unknown audit export format {fmt!r}: use jsonl or syslog")


def send(lines: Iterable[str], destination: str, *, timeout_s: float = 10.0) -> int:
    """Send to `udp://host:port` (one datagram each) or `tcp://host:port` (RFC 6587 octet counting)."""
    parts = urlsplit(destination)
    if parts.scheme not in ("udp", "tcp") or not parts.hostname or parts.port is None:
        raise StoreError(f"audit export destination {destination!r}: use udp://host:port or tcp://host:port")
    family = socket.AF_INET6 if ":" in parts.hostname else socket.AF_INET
    count = 0
    try:
        if parts.scheme == "udp":
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                for line in lines:
                    sock.sendto(line.encode(), (parts.hostname, parts.port))
                    count += 1
        else:
            with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as sock:
                for line in lines:
                    data = line.encode()
                    sock.sendall(f"{len(data)} ".encode() + data)
                    count += 1
    except OSError as exc:
        raise StoreError(f"audit export to {destination}: {exc}") from None
    return count


# --- offline verification -------------------------------------------------------------------------
@dataclass
class _Row:
    id: int
    kind: str
    detail: Any
    prev_hash: str
    hash: str
    seq: int | None
    at: datetime
    key_id: str | None
    signature: str | None


@dataclass(frozen=True)
class _HeadView:
    seq: int
    hash: str
    key_id: str | None
    signature: str | None


def verify_jsonl(lines: Iterable[str], public_keys: Iterable[bytes] | None = None) -> list[AuditProblem]:
    """Problems found in an exported JSON-lines audit log (empty: every chain, signature and head verifies).

    Trusts only `public_keys` when given; otherwise the key records in the export (which whoever edits
    the export could also replace: pin the key for a real check).
    """
    embedded: dict[str, bytes] = {}
    runs: dict[str, list[_Row]] = {}
    heads: dict[str, _HeadView] = {}
    problems: list[AuditProblem] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            kind = record["type"]
            if kind == "key":
                embedded[str(record["key_id"])] = bytes.fromhex(str(record["public_key"]))
            elif kind == "event":
                runs.setdefault(str(record["run_id"]), []).append(_Row(
                    int(record["id"]), str(record["kind"]), record["detail"], str(record["prev_hash"]),
                    str(record["hash"]), record["seq"], datetime.fromisoformat(str(record["at"])),
                    record.get("key_id"), record.get("signature")))
            elif kind == "head":
                heads[str(record["run_id"])] = _HeadView(int(record["seq"]), str(record["hash"]),
                                                         record.get("key_id"), record.get("signature"))
            else:
                raise ValueError(f"unknown record type {kind!r}")
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(AuditProblem("?", 0, None, None, f"line {number} is not an audit record ({exc})"))
    keys: Mapping[str, bytes] = ({key_id(k): k for k in public_keys} if public_keys is not None else
                                 {key_id(v): v for v in embedded.values()})
    for run_id in sorted(set(runs) | set(heads)):
        problem, _, _ = _verify_chain(run_id, runs.get(run_id, []), heads.get(run_id), keys)
        if problem is not None:
            problems.append(problem)
    return problems
