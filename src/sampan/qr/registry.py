"""The issuer registry: each serial issued once, and coarse, pseudonymous scan events that flag misuse.

One item, one code: `issue` records a serial once; a second issue of the same serial is refused, the
issuer's own included (the primary key makes the refusal atomic), and `check_code` refuses a validly signed
code for an issued serial whose bytes differ from the code issued (a re-signed serial with a new expiry).
`check_code` also refuses a serial recorded WITHOUT its code (`issue(serial)` with neither `code_text` nor
`code_digest`): otherwise any number of differently signed codes for it would pass (REVQ-6). Such a serial can
still be scanned through `record_scan` (the caller then vouches for the code).
What "one item, one code" does not cover: the SAME signed code printed on many items. The `shared_code` flag
(below) is a heuristic for that, not a guarantee.
What the registry cannot do: stop whoever controls its database from deleting rows; run it where the
issuer alone cannot rewrite it if that matters.

Scan events hold only (serial, coarse region, hour, verdict), aggregated into a count per distinct tuple:

* region: a geohash of 1 to 3 characters (a level-3 cell is about 156 x 156 km at the equator): no street,
  no town. The caller truncates; a longer geohash is refused, not cut.
* hour: the scan time truncated to the hour (UTC).
* no user identity, no device id, no exact location, no sequence number: the scan table has no rowid
  (`WITHOUT ROWID`, keyed by the fields themselves), so its rows are stored in key order, not arrival order.
* the serial is stored as an HMAC-SHA256 tag of (issuer, serial) under a registry tag key, one tag for the
  scan table and another for the items table, so a reader of the database cannot join the two, list serials,
  or (REVQ-9) map rows to guessed serials: hashing a sequential serial range needs the key. The key is 32
  random bytes in a 0600 file OUTSIDE the database file (default `<database>.tagkey` beside it; pass
  `tag_key_path` to keep it elsewhere, e.g. off the backup set): whoever holds the file AND the key is back to
  "a serial that can be guessed can be confirmed". Losing the key orphans the history (tags cannot be
  recomputed); an in-memory registry uses a fresh random key.

A serial's history is reached only through the serial (`history`); there is no query by region or time.
What the database still shows (claim no more): which serials were scanned in a region-hour. Where a
region-hour holds few scans, two serials seen there together hint at one person; no field links them, and
after `purge` (VACUUM rebuilds the file in key order) two worlds that differ only in who scanned which serial
give byte-identical files (tests/qr/test_registry.py). Between purges, SQLite's in-page cell layout still
reflects the order in which rows arrived; run `purge` often (e.g. hourly) if the file itself may be read.
Events older than `retention_days` are never returned, are deleted on every write, and `purge` deletes them
and runs VACUUM. SQLite's `secure_delete` pragma is on and the journal is a rollback journal (not WAL), so a
deleted row's bytes are overwritten in the database file. Outside this code's reach: copies already taken
(backups), and freed disk blocks of the deleted rollback journal or of an SSD's wear levelling.

Flags (thresholds in `RegistryPolicy`, defaults chosen for consumer goods and tickets):

* reuse: a scan of a single-use item (a ticket) after the scan that consumed it.
* velocity: more than `velocity_max_scans` scans of one serial within `velocity_window_hours` hours.
* impossible travel: two scans whose regions are farther apart than `max_travel_kmh` allows in the hours
  between them. Hours are truncated, so the elapsed time may be up to one hour longer than the difference;
  the distance used is the smallest possible between the two cells, so the flag is conservative.
* shared_code (HEURISTIC, REVQ-13): scans on more than `max_scan_days` distinct days, or from more than
  `max_regions` distinct regions, within the retention period: the pattern of one genuine code printed on many
  items that are each checked once (a slow drip no velocity or travel flag sees). An owner who checks an item
  on many days raises it too, and a counterfeiter who spreads fewer scans evades it: a signal for review, not
  proof; tune the thresholds to the product.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.pool import StaticPool

from sampan.errors import DataError, StoreError
from sampan.files import check_private_mode, create_exclusive_bytes, private_sqlite
from sampan.qr._geo import GEOHASH, region_distance_km
from sampan.qr.keys import IssuerKey, check_name
from sampan.qr.payload import ItemCode, ItemCodeError, MalformedCodeError, sign, verify

__all__ = ["IssuerRegistry", "RegistryPolicy", "ScanEvent", "ScanResult", "ScanRecord", "RegistryError",
           "SerialReissueError", "UnknownSerialError", "CodeMismatchError", "ScanEventError", "VERDICTS",
           "FLAGS", "region_distance_km"]

VERDICTS = ("genuine", "suspect", "copy", "invalid")
FLAGS = ("reuse", "velocity", "impossible_travel", "shared_code")


class RegistryError(StoreError):
    """A registry that cannot be opened, or an operation it refuses."""


class SerialReissueError(ItemCodeError):
    """A serial that was issued before: one item, one code, for the issuer too."""


class UnknownSerialError(ItemCodeError):
    """A serial this registry never issued."""


class CodeMismatchError(ItemCodeError):
    """A validly signed code whose bytes differ from the code issued for its serial (a re-signed serial)."""


class ScanEventError(DataError):
    """A scan event with a field the registry refuses (too precise a region, an unknown verdict, a bad hour)."""


@dataclass(frozen=True)
class RegistryPolicy:
    """Thresholds for the flags and the retention limit (documented in the module note)."""

    retention_days: int = 90
    velocity_max_scans: int = 20
    velocity_window_hours: int = 24
    max_travel_kmh: float = 1000.0  # a little above an airliner's cruise speed
    max_scan_days: int = 20   # shared_code: distinct scan days within the retention period
    max_regions: int = 6      # shared_code: distinct regions within the retention period

    def __post_init__(self) -> None:
        if self.retention_days < 1 or self.velocity_max_scans < 1 or self.velocity_window_hours < 1 \
                or not self.max_travel_kmh > 0 or self.max_scan_days < 1 or self.max_regions < 1:
            raise RegistryError(f"registry policy values must be positive (got {self})")


@dataclass(frozen=True)
class ScanEvent:
    """One scan as the registry sees it: a coarse region (geohash, 1-3 characters), the hour, the verdict.
    There is deliberately no field for a person, a device or a precise place."""

    region: str
    hour: dt.datetime
    verdict: str

    def __post_init__(self) -> None:
        if not isinstance(self.region, str) or not 1 <= len(self.region) <= 3 \
                or any(c not in GEOHASH for c in self.region):
            raise ScanEventError(f"field 'region' must be a geohash of 1 to 3 characters (coarse, ~156 km cells "
                                 f"or larger); got {self.region!r:.40}: truncate it before reporting")
        if not isinstance(self.hour, dt.datetime) or self.hour.tzinfo is None or self.hour.utcoffset() is None:
            raise ScanEventError("field 'hour' must be a timezone-aware datetime")
        object.__setattr__(self, "hour", self.hour.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0))
        if self.verdict not in VERDICTS:
            raise ScanEventError(f"field 'verdict' must be one of {', '.join(VERDICTS)} (got {self.verdict!r:.40})")

    @property
    def hour_index(self) -> int:
        """Hours since the Unix epoch (what is stored)."""
        return int(self.hour.timestamp()) // 3600


@dataclass(frozen=True)
class ScanRecord:
    """A stored, aggregated scan: `count` scans of the serial in this region, hour and verdict."""

    region: str
    hour: dt.datetime
    verdict: str
    count: int


@dataclass(frozen=True)
class ScanResult:
    """What a recorded scan raised: its flags (subset of FLAGS) and a sentence per flag. The sentences
    name no region of earlier scans (they may be shown to whoever scans the item)."""

    flags: tuple[str, ...]
    reasons: tuple[str, ...] = field(default=())
    scans_in_window: int = 0


_meta = MetaData()
_items = Table(
    "qr_items", _meta,
    Column("item_tag", LargeBinary(32), primary_key=True),
    Column("code_digest", LargeBinary(32), nullable=True),
    Column("single_use", Boolean, nullable=False),
    Column("consumed", Boolean, nullable=False),
    sqlite_with_rowid=False,
)
_scans = Table(
    "qr_scans", _meta,
    Column("scan_tag", LargeBinary(32), primary_key=True),
    Column("hour", Integer, primary_key=True),
    Column("region", String(3), primary_key=True),
    Column("verdict", String(8), primary_key=True),
    Column("scans", Integer, nullable=False),
    Index("qr_scans_hour", "hour"),  # purge by hour without a full scan
    sqlite_with_rowid=False,
)


TAG_KEY_BYTES = 32


def _keyed_tag(key: bytes, kind: bytes, issuer: str, serial: str) -> bytes:
    """HMAC-SHA256 tag of a serial under the registry tag key (REVQ-9: unkeyed hashes of guessable serials
    could be inverted by anyone who reads the database file)."""
    message = b"sampan-qr-" + kind + b"/2\x00" + issuer.encode() + b"\x00" + serial.encode()
    return hmac.new(key, message, hashlib.sha256).digest()


def load_tag_key(path: str | Path) -> bytes:
    """The registry tag key at `path`: created (32 random bytes, 0600, complete or not at all) if missing;
    refused if other users can read it or it has the wrong length."""
    target = Path(path).expanduser()
    create_exclusive_bytes(target, secrets.token_bytes(TAG_KEY_BYTES))
    check_private_mode(target, "registry tag key")
    key = target.read_bytes()
    if len(key) != TAG_KEY_BYTES:
        raise RegistryError(f"registry tag key {str(target)!r} must hold {TAG_KEY_BYTES} bytes, has {len(key)}")
    return key


def _now_hour(now: dt.datetime | None) -> int:
    if now is None:
        now = dt.datetime.now(dt.UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ScanEventError("'now' must be a timezone-aware datetime")
    return int(now.timestamp()) // 3600


class IssuerRegistry:
    """One issuer's registry of issued serials and their scans. Create with `IssuerRegistry.open(url, issuer)`."""

    def __init__(self, engine: Engine, issuer: str, policy: RegistryPolicy | None = None, *,
                 tag_key: bytes | None = None) -> None:
        self.engine = engine
        self.issuer = check_name(issuer, "issuer", 32, RegistryError)
        self.policy = policy or RegistryPolicy()
        if tag_key is not None and len(tag_key) != TAG_KEY_BYTES:
            raise RegistryError(f"registry field 'tag_key' must be {TAG_KEY_BYTES} bytes")
        self._tag_key = tag_key if tag_key is not None else secrets.token_bytes(TAG_KEY_BYTES)

    def _tag(self, kind: bytes, serial: str) -> bytes:
        return _keyed_tag(self._tag_key, kind, self.issuer, serial)

    @classmethod
    def open(cls, url: str, issuer: str, policy: RegistryPolicy | None = None, *,
             tag_key_path: str | Path | None = None) -> IssuerRegistry:
        """Open (creating 0600) a registry; SQLite gets secure_delete and a rollback journal (see the note).
        The tag key lives at `tag_key_path` (default: `<database>.tagkey`; in memory: a fresh random key)."""
        memory = url == "sqlite://" or url == "sqlite:///:memory:"
        try:
            if memory:
                engine = create_engine("sqlite://", poolclass=StaticPool)
            else:
                private_sqlite(url)
                engine = create_engine(url)
            if tag_key_path is None and not memory:
                database = engine.url.database
                if not database:
                    raise RegistryError(f"issuer registry {url!r}: pass 'tag_key_path' (no database file to put "
                                        f"the tag key beside)")
                tag_key_path = f"{database}.tagkey"
            tag_key = load_tag_key(tag_key_path) if tag_key_path is not None else None
        except (ArgumentError, ImportError, OSError) as exc:
            raise RegistryError(f"cannot open issuer registry {url!r}: {exc}") from None
        if engine.dialect.name == "sqlite":
            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten, not just unlinked
                cursor.execute("PRAGMA journal_mode=DELETE")  # WAL would keep old pages in the -wal file
                cursor.close()
        try:
            _meta.create_all(engine)
        except OperationalError as exc:
            raise RegistryError(f"cannot open issuer registry {url!r}: {exc.orig}") from None
        return cls(engine, issuer, policy, tag_key=tag_key)

    def close(self) -> None:
        self.engine.dispose()

    # --- issuing ----------------------------------------------------------------------------------------------
    def issue(self, serial: str, *, single_use: bool = False, code_digest: bytes | None = None,
              code_text: str | None = None) -> None:
        """Record `serial` as issued, once; a second call for the same serial raises SerialReissueError.
        Give the signed `code_text` (or its SHA-256 `code_digest`): `check_code` refuses serials issued without."""
        check_name(serial, "serial", 64, MalformedCodeError)
        if code_text is not None:
            digest = hashlib.sha256(code_text.encode()).digest()
            if code_digest is not None and code_digest != digest:
                raise RegistryError(f"serial {serial!r}: 'code_digest' is not the SHA-256 of 'code_text'")
            code_digest = digest
        if code_digest is not None and len(code_digest) != 32:
            raise RegistryError(f"serial {serial!r}: 'code_digest' must be a 32-byte SHA-256 digest")
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(_items).values(item_tag=self._tag(b"item", serial),
                                                   code_digest=code_digest, single_use=bool(single_use),
                                                   consumed=False))
        except IntegrityError:
            raise SerialReissueError(f"serial {serial!r} of issuer {self.issuer!r} was issued before; one item, one "
                                     f"code: a serial is never issued twice, not even by its issuer") from None

    def issue_code(self, code: ItemCode, key: IssuerKey, *, single_use: bool = False) -> str:
        """Sign `code` and record its serial (refused if issued before); returns the QR text."""
        if code.issuer != self.issuer:
            raise RegistryError(f"registry of issuer {self.issuer!r} cannot issue a code of issuer {code.issuer!r}")
        text = sign(code, key)
        self.issue(code.serial, single_use=single_use, code_text=text)
        return text

    # --- scanning ---------------------------------------------------------------------------------------------
    def check_code(self, text: str, public_keys: Mapping[str, Ed25519PublicKey | bytes | str], event: ScanEvent,
                   *, consume: bool = False, now: dt.datetime | None = None) -> tuple[ItemCode, ScanResult]:
        """Verify `text` (signature, expiry), check it is the code issued for its serial, record the scan."""
        code = verify(text, public_keys, now=now)
        if code.issuer != self.issuer:
            raise UnknownSerialError(f"code of issuer {code.issuer!r} scanned against the registry of "
                                     f"{self.issuer!r}")
        with self.engine.connect() as conn:
            row = conn.execute(select(_items.c.code_digest).where(
                _items.c.item_tag == self._tag(b"item", code.serial))).first()
        if row is None:
            raise UnknownSerialError(f"serial {code.serial!r} was never issued by {self.issuer!r}")
        digest = row.code_digest
        if digest is None:
            raise CodeMismatchError(f"serial {code.serial!r} of issuer {self.issuer!r} was issued without its code "
                                    f"(issue(serial) with no code_text/code_digest); check_code cannot tell its code "
                                    f"from a re-signed one and refuses it")
        if not hmac.compare_digest(digest, hashlib.sha256(text.encode()).digest()):
            raise CodeMismatchError(f"serial {code.serial!r} of issuer {self.issuer!r} was issued as a different "
                                    f"code; this one (validly signed) is a re-issue and is refused")
        return code, self.record_scan(code.serial, event, consume=consume, now=now)

    def record_scan(self, serial: str, event: ScanEvent, *, consume: bool = False,
                    now: dt.datetime | None = None) -> ScanResult:
        """Store one scan (aggregated) and return the flags it raises against the serial's retained history."""
        check_name(serial, "serial", 64, ScanEventError)
        policy, now_hour, hour = self.policy, _now_hour(now), event.hour_index
        cutoff = now_hour - 24 * policy.retention_days
        if hour < cutoff:
            raise ScanEventError(f"scan hour {event.hour:%Y-%m-%d %H}:00 is past the {policy.retention_days}-day "
                                 f"retention limit; it is not stored")
        if hour > now_hour + 1:
            raise ScanEventError(f"scan hour {event.hour:%Y-%m-%d %H}:00 is in the future")
        item_tag, scan_tag = self._tag(b"item", serial), self._tag(b"scan", serial)
        flags: list[str] = []
        reasons: list[str] = []
        with self.engine.begin() as conn:
            conn.execute(delete(_scans).where(_scans.c.hour < cutoff))
            item = conn.execute(select(_items.c.single_use, _items.c.consumed)
                                .where(_items.c.item_tag == item_tag)).first()
            if item is None:
                raise UnknownSerialError(f"serial {serial!r} was never issued by {self.issuer!r}")
            if consume and not item.single_use:
                raise RegistryError(f"serial {serial!r} is not a single-use item; it cannot be consumed")
            if item.consumed:
                flags.append("reuse")
                reasons.append(f"serial {serial!r} is single-use and was already consumed")
            elif consume:
                conn.execute(update(_items).where(_items.c.item_tag == item_tag).values(consumed=True))
            history = conn.execute(select(_scans.c.hour, _scans.c.region, _scans.c.scans)
                                   .where(_scans.c.scan_tag == scan_tag)).all()
            window = 1 + sum(row.scans for row in history if hour - policy.velocity_window_hours < row.hour <= hour)
            if window > policy.velocity_max_scans:
                flags.append("velocity")
                reasons.append(f"{window} scans within {policy.velocity_window_hours} h (limit "
                               f"{policy.velocity_max_scans})")
            for row in history:
                distance = region_distance_km(row.region, event.region)
                if distance > policy.max_travel_kmh * (abs(hour - row.hour) + 1):
                    flags.append("impossible_travel")
                    # no region names: reasons may reach the scanning phone, and a stranger who scans an
                    # item must not learn where it was scanned before
                    reasons.append(f"at least {distance:.0f} km from an earlier scan's region within "
                                   f"{abs(hour - row.hour) + 1} h")
                    break
            days = {row.hour // 24 for row in history} | {hour // 24}   # UTC days (rows past retention: deleted)
            regions = {row.region for row in history} | {event.region}
            if len(days) > policy.max_scan_days or len(regions) > policy.max_regions:
                flags.append("shared_code")
                reasons.append(f"scans on {len(days)} days from {len(regions)} regions within "
                               f"{policy.retention_days} days (limits {policy.max_scan_days} days, "
                               f"{policy.max_regions} regions): one code may be printed on many items (heuristic)")
            key = and_(_scans.c.scan_tag == scan_tag, _scans.c.hour == hour, _scans.c.region == event.region,
                       _scans.c.verdict == event.verdict)
            if conn.execute(update(_scans).where(key).values(scans=_scans.c.scans + 1)).rowcount == 0:
                conn.execute(insert(_scans).values(scan_tag=scan_tag, hour=hour, region=event.region,
                                                   verdict=event.verdict, scans=1))
        return ScanResult(tuple(flags), tuple(reasons), window)

    def history(self, serial: str, *, now: dt.datetime | None = None) -> list[ScanRecord]:
        """The serial's scans within the retention limit, oldest first (reachable only through the serial)."""
        cutoff = _now_hour(now) - 24 * self.policy.retention_days
        with self.engine.connect() as conn:
            rows = conn.execute(select(_scans.c.hour, _scans.c.region, _scans.c.verdict, _scans.c.scans)
                                .where(_scans.c.scan_tag == self._tag(b"scan", serial),
                                       _scans.c.hour >= cutoff)
                                .order_by(_scans.c.hour, _scans.c.region, _scans.c.verdict)).all()
        return [ScanRecord(r.region, dt.datetime.fromtimestamp(r.hour * 3600, dt.UTC), r.verdict, r.scans)
                for r in rows]

    def purge(self, *, now: dt.datetime | None = None) -> int:
        """Delete every scan past the retention limit and compact the file (VACUUM); returns rows deleted."""
        cutoff = _now_hour(now) - 24 * self.policy.retention_days
        with self.engine.begin() as conn:
            deleted = conn.execute(delete(_scans).where(_scans.c.hour < cutoff)).rowcount
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM")
        return int(deleted)

    def count_items(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_items)).scalar_one())
