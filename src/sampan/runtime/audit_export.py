"""The signed audit log exported for a SIEM: JSON lines (verifiable offline) or RFC 5424 syslog messages.

Why: a bank's security team keeps its own copy of who approved, ran and refused what, outside the
coordinator's database. JSON lines carry every field the chain needs, so `verify_jsonl` re-checks the
export on a machine that never saw the store: each entry's hash (previous hash, position, time, kind,
detail), its Ed25519 signature, each run's signed head, and the export's signed manifest (last line: the
export's time and every run's entry count and last hash, signed when the export is made). The manifest is
what catches a run's newest entries dropped with an earlier export's head put back (R14-ENT-6: a head says
where a chain ended, not when) and a run dropped whole from the export. Syslog messages (RFC 5424,
structured data `sampan@32473`) carry the same fields for a collector that indexes them; over TCP they are
framed by octet counting (RFC 6587), over UDP one per datagram. Exporting needs the store's audit key (it
signs the manifest).

Threat model: whoever handles the export (a log shipper, the SIEM's storage) may edit, drop, reorder or
insert lines. With the coordinator's audit public key pinned (`public_keys`, from `sampan audit-log
verify` output or the key file), any such change to a run's entries is reported naming the run and the
entry; the key lines inside an export are only a convenience and are not trusted unless pinned; under a
pinned key every run needs a signed head (an unsigned chain is refused). Not covered: an earlier export
replayed whole (it is a genuine earlier state: `verify_manifest_time` gives its time, check it is recent),
and a run deleted from the store before exporting (anchor the heads, `sampan audit-log verify --write-anchor`).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import select

from sampan.runtime.audit_chain import (
    AuditProblem,
    _check_signature,
    _export_message,
    _iso_utc,
    _verify_chain,
    key_id,
)
from sampan.runtime.errors import StoreError
from sampan.runtime.store import AuditHeadRow, AuditKeyRow, EventRow, Store

__all__ = ["Format", "export_lines", "jsonl_lines", "syslog_messages", "verify_jsonl", "verify_manifest_time", "send",
           "SD_ID"]

Format = Literal["jsonl", "syslog"]
SD_ID = "sampan@32473"  # 32473: the private enterprise number RFC 5612 reserves for examples and documentation
_PRI = 13 * 8 + 5  # facility 13 (log audit), severity 5 (notice)
_VERSION = 1


def _records(store: Store) -> Iterator[dict[str, Any]]:
    """Every key, then every run's entries in chain order followed by its signed head, then the export's
    manifest: when, and each run's (entries, last hash), signed with the store's audit key."""
    path = store.audit_key_path
    if store._signer is None and path is not None and not path.exists():
        with store._session() as s:
            if s.scalars(select(AuditKeyRow.key_id)).first() is not None:  # signed before, by a key not here
                raise StoreError(f"the export's manifest is signed with the store's audit key, and it is not at "
                                 f"{str(path)!r}: export on the coordinator, or point $SAMPAN_AUDIT_KEY at its key")
    signer = store.signer
    exported: dict[str, list[Any]] = {}
    with store._session() as s:
        listed = set()
        for k in s.scalars(select(AuditKeyRow).order_by(AuditKeyRow.key_id)):
            listed.add(k.key_id)
            yield {"v": _VERSION, "type": "key", "key_id": k.key_id, "public_key": k.public_key}
        if signer.key_id not in listed:  # the manifest's key, for an unpinned check (pin it for a real one)
            yield {"v": _VERSION, "type": "key", "key_id": signer.key_id, "public_key": signer.public_raw.hex()}
        heads = {h.run_id: h for h in s.scalars(select(AuditHeadRow))}
        run_ids = sorted(set(s.scalars(select(EventRow.run_id).distinct())) | set(heads))
    for run_id in run_ids:
        entries, last = 0, ""
        for row in store.events(run_id):
            entries, last = entries + 1, row.hash
            yield {"v": _VERSION, "type": "event", "run_id": run_id, "id": row.id, "seq": row.seq,
                   "at": _iso_utc(row.at), "kind": row.kind, "detail": row.detail, "prev_hash": row.prev_hash,
                   "hash": row.hash, "key_id": row.key_id, "signature": row.signature}
        exported[run_id] = [entries, last]
        head = heads.get(run_id)
        if head is not None:
            yield {"v": _VERSION, "type": "head", "run_id": run_id, "seq": head.seq, "hash": head.hash,
                   "key_id": head.key_id, "signature": head.signature}
    at = datetime.now(UTC).isoformat(timespec="seconds")
    yield {"v": _VERSION, "type": "manifest", "at": at, "heads": exported, "key_id": signer.key_id,
           "signature": signer.sign(_export_message(at, exported))}


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
        params = {k: v for k, v in record.items() if k not in ("detail", "heads", "v") and v is not None}
        sd = SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in sorted(params.items()))
        if kind == "event":
            msgid, timestamp = "audit", record["at"]
            msg = json.dumps(record["detail"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        elif kind == "manifest":  # the signed (entries, last hash) per run, as JSON in the MSG
            msgid, timestamp = "audit-manifest", "-"
            msg = json.dumps(record["heads"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
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
    manifests: list[dict[str, Any]] = []
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
            elif kind == "manifest":
                manifests.append({"at": str(record["at"]), "heads": dict(record["heads"]),
                                  "key_id": record.get("key_id"), "signature": record.get("signature")})
            else:
                raise ValueError(f"unknown record type {kind!r}")
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(AuditProblem("?", 0, None, None, f"line {number} is not an audit record ({exc})"))
    keys: Mapping[str, bytes] = ({key_id(k): k for k in public_keys} if public_keys is not None else
                                 {key_id(v): v for v in embedded.values()})
    pinned = public_keys is not None
    chains: dict[str, list[str]] = {}
    for run_id in sorted(set(runs) | set(heads)):
        problem, _, chains[run_id] = _verify_chain(run_id, runs.get(run_id, []), heads.get(run_id), keys,
                                                   require_head=pinned)
        if problem is not None:
            problems.append(problem)
    problems.extend(_manifest_problems(manifests, chains, keys))
    return problems


def _manifest_problems(manifests: list[dict[str, Any]], chains: Mapping[str, list[str]],
                       keys: Mapping[str, bytes]) -> list[AuditProblem]:
    """The export's one signed manifest must name exactly the runs exported, each with its entries and last hash."""
    def whole(reason: str, run_id: str = "*") -> list[AuditProblem]:
        return [AuditProblem(run_id, 0, None, None, reason)]

    if len(manifests) != 1:
        return whole(f"export manifest: {len(manifests)} manifests where one signed manifest must end the export "
                     "(lines dropped, or exports spliced together)")
    manifest = manifests[0]
    why = _check_signature(keys, manifest["key_id"], manifest["signature"],
                           _export_message(manifest["at"], manifest["heads"]))
    if why:
        return whole(f"export manifest: {why}")
    problems = []
    for run_id in sorted(set(chains) | set(manifest["heads"])):
        chain, named = chains.get(run_id, []), manifest["heads"].get(run_id)
        if named is None:
            problems += whole("export manifest: this run was not in the export the manifest signed (inserted)",
                              run_id)
        elif [len(chain), chain[-1] if chain else ""] != list(named):
            problems += whole(f"export manifest: the export held {named[0]} entries ending in "
                              f"{str(named[1])[:12]}…, here {len(chain)}: entries dropped, added or an earlier "
                              "head put back", run_id)
    return problems


def verify_manifest_time(lines: Iterable[str]) -> str | None:
    """When the export was made (its manifest's time, ISO 8601 UTC); verify it first with `verify_jsonl`."""
    found = None
    for line in lines:
        if '"manifest"' in line:
            record = json.loads(line)
            if isinstance(record, dict) and record.get("type") == "manifest":
                found = str(record.get("at"))
    return found
