"""The issuer registry: one item one code, the misuse flags, retention, and what a curious operator can learn."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from sampan.qr.keys import generate_issuer_key, public_key_hex
from sampan.qr.payload import (
    DOMAIN,
    PREFIX,
    BadSignatureError,
    ExpiredCodeError,
    ItemCode,
    base45_encode,
    encode_body,
    sign,
)
from sampan.qr.registry import (
    CodeMismatchError,
    IssuerRegistry,
    RegistryError,
    RegistryPolicy,
    ScanEvent,
    ScanEventError,
    SerialReissueError,
    UnknownSerialError,
    region_distance_km,
)

KEY = generate_issuer_key("acme")
TRUST = {"acme": public_key_hex(KEY)}
H0 = dt.datetime(2027, 3, 1, 10, tzinfo=dt.UTC)
HONG_KONG, SHENZHEN_CELL, LONDON = "wec", "ws1", "gcp"


def _hours(n: int) -> dt.datetime:
    return H0 + dt.timedelta(hours=n)


def _open(tmp_path: Path, name: str = "registry.db", **policy: int) -> IssuerRegistry:
    folder = tmp_path / "reg"
    folder.mkdir(mode=0o700, exist_ok=True)
    return IssuerRegistry.open(f"sqlite:///{folder / name}", "acme", RegistryPolicy(**policy) if policy else None)


def _scan(region: str = HONG_KONG, hour: int = 0, verdict: str = "genuine") -> ScanEvent:
    return ScanEvent(region, _hours(hour), verdict)


def _scan_tag(registry: IssuerRegistry, serial: str) -> bytes:
    """What the registry stores for a serial's scans (a keyed tag: only the registry's key recomputes it)."""
    return registry._tag(b"scan", serial)


# --- one item, one code ---------------------------------------------------------------------------------------
def test_a_serial_is_issued_once_even_by_its_issuer(tmp_path: Path) -> None:
    registry = _open(tmp_path)
    code = ItemCode("SN-1", "acme", dt.date(2028, 1, 1))
    registry.issue_code(code, KEY)
    with pytest.raises(SerialReissueError, match="'SN-1' of issuer 'acme' was issued before"):
        registry.issue_code(code, KEY)
    with pytest.raises(SerialReissueError):  # a later expiry is still the same serial
        registry.issue_code(ItemCode("SN-1", "acme", dt.date(2030, 1, 1)), KEY)
    registry.close()
    reopened = _open(tmp_path)  # the refusal survives a restart
    with pytest.raises(SerialReissueError):
        reopened.issue("SN-1")
    assert reopened.count_items() == 1


def test_scanned_codes_are_checked_against_what_was_issued(tmp_path: Path) -> None:
    registry = _open(tmp_path)
    code = ItemCode("SN-2", "acme", dt.date(2028, 1, 1))
    text = registry.issue_code(code, KEY)
    checked, result = registry.check_code(text, TRUST, _scan(), now=H0)
    assert checked == code and result.flags == () and result.scans_in_window == 1
    resigned = sign(ItemCode("SN-2", "acme", dt.date(2031, 1, 1)), KEY)  # the issuer's own key, outside the registry
    with pytest.raises(CodeMismatchError, match="re-issue"):
        registry.check_code(resigned, TRUST, _scan(), now=H0)
    never_issued = sign(ItemCode("SN-3", "acme", dt.date(2028, 1, 1)), KEY)
    with pytest.raises(UnknownSerialError, match="never issued"):
        registry.check_code(never_issued, TRUST, _scan(), now=H0)
    body = encode_body(code)
    forged = PREFIX + base45_encode(body + generate_issuer_key("evil").sign(DOMAIN + body))
    with pytest.raises(BadSignatureError):
        registry.check_code(forged, TRUST, _scan(), now=H0)
    with pytest.raises(ExpiredCodeError):
        registry.check_code(text, TRUST, _scan(), now=dt.datetime(2028, 1, 2, tzinfo=dt.UTC))


# --- flags ----------------------------------------------------------------------------------------------------
def test_reuse_of_a_single_use_ticket_is_flagged(tmp_path: Path) -> None:
    registry = _open(tmp_path)
    registry.issue("TICKET-9", single_use=True)
    registry.issue("BAG-1")
    assert registry.record_scan("TICKET-9", _scan(), now=H0).flags == ()  # a look before the gate
    assert registry.record_scan("TICKET-9", _scan(), consume=True, now=H0).flags == ()  # the gate
    again = registry.record_scan("TICKET-9", _scan(hour=1), now=_hours(1))
    assert again.flags == ("reuse",) and "already consumed" in again.reasons[0]
    assert registry.record_scan("TICKET-9", _scan(hour=2), consume=True, now=_hours(2)).flags == ("reuse",)
    with pytest.raises(RegistryError, match="not a single-use item"):
        registry.record_scan("BAG-1", _scan(), consume=True, now=H0)


def test_velocity_is_flagged_above_the_documented_limit(tmp_path: Path) -> None:
    registry = _open(tmp_path, velocity_max_scans=5, velocity_window_hours=24)
    registry.issue("SN-V")
    results = [registry.record_scan("SN-V", _scan(hour=h), now=_hours(h)) for h in range(5)]
    assert all(r.flags == () for r in results) and results[-1].scans_in_window == 5
    sixth = registry.record_scan("SN-V", _scan(hour=5), now=_hours(5))
    assert sixth.flags == ("velocity",) and "6 scans within 24 h (limit 5)" in sixth.reasons[0]
    later = registry.record_scan("SN-V", _scan(hour=40), now=_hours(40))  # the first scans left the window
    assert later.flags == () and later.scans_in_window == 1
    assert RegistryPolicy().velocity_max_scans == 20 and RegistryPolicy().velocity_window_hours == 24


def test_impossible_travel_is_flagged(tmp_path: Path) -> None:
    registry = _open(tmp_path)
    for serial in ("SN-T1", "SN-T2", "SN-T3"):
        registry.issue(serial)
    registry.record_scan("SN-T1", _scan(HONG_KONG, 0), now=H0)
    jump = registry.record_scan("SN-T1", _scan(LONDON, 3), now=_hours(3))
    assert jump.flags == ("impossible_travel",) and "from an earlier scan's region" in jump.reasons[0]
    assert "wec" not in jump.reasons[0]  # a stranger who scans the item does not learn where it was before
    registry.record_scan("SN-T2", _scan(HONG_KONG, 0), now=H0)
    assert registry.record_scan("SN-T2", _scan(LONDON, 14), now=_hours(14)).flags == ()  # a flight's time
    registry.record_scan("SN-T3", _scan(HONG_KONG, 0), now=H0)
    assert registry.record_scan("SN-T3", _scan(SHENZHEN_CELL, 0), now=H0).flags == ()  # neighbouring cells
    assert region_distance_km(HONG_KONG, SHENZHEN_CELL) == 0.0  # adjacent cells: they may touch
    assert 8000 < region_distance_km(HONG_KONG, LONDON) < 9700  # a lower bound on the ~9,600 km between them
    assert region_distance_km("w", "wec") == 0.0


def test_unknown_serials_and_bad_events_are_refused(tmp_path: Path) -> None:
    registry = _open(tmp_path)
    with pytest.raises(UnknownSerialError, match="never issued"):
        registry.record_scan("NOPE", _scan(), now=H0)
    registry.issue("SN-E")
    with pytest.raises(ScanEventError, match="future"):
        registry.record_scan("SN-E", _scan(hour=5), now=H0)
    with pytest.raises(ScanEventError, match="retention"):
        registry.record_scan("SN-E", _scan(hour=-24 * 91), now=H0)


@pytest.mark.parametrize("kwargs, message", [
    ({"region": "wecnv"}, "1 to 3 characters"),  # a 5-character geohash (~5 km) is too precise
    ({"region": "WEC"}, "geohash"),
    ({"verdict": "maybe"}, "verdict"),
    ({"hour": dt.datetime(2027, 3, 1, 10)}, "timezone-aware"),
])
def test_scan_event_refuses_precise_or_unknown_fields(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"region": "wec", "hour": H0, "verdict": "genuine", **kwargs}
    with pytest.raises(ScanEventError, match=message):
        ScanEvent(**fields)  # type: ignore[arg-type]


def test_scan_event_keeps_only_the_hour_and_has_no_identity_fields() -> None:
    event = ScanEvent("wec", dt.datetime(2027, 3, 1, 18, 42, 7, 5, tzinfo=dt.timezone(dt.timedelta(hours=8))),
                      "genuine")
    assert event.hour == dt.datetime(2027, 3, 1, 10, tzinfo=dt.UTC)
    assert set(ScanEvent.__dataclass_fields__) == {"region", "hour", "verdict"}
    with pytest.raises(TypeError):
        ScanEvent("wec", H0, "genuine", device_id="phone-1")  # type: ignore[call-arg]


# --- retention ------------------------------------------------------------------------------------------------
def test_events_past_retention_are_never_returned(tmp_path: Path) -> None:
    registry = _open(tmp_path, retention_days=30)
    registry.issue("SN-R")
    registry.record_scan("SN-R", _scan(hour=0), now=H0)
    registry.record_scan("SN-R", _scan(hour=24 * 20), now=_hours(24 * 20))
    assert [r.hour for r in registry.history("SN-R", now=_hours(24 * 20))] == [H0, _hours(24 * 20)]
    assert [r.hour for r in registry.history("SN-R", now=_hours(24 * 31))] == [_hours(24 * 20)]  # before any purge


def test_purge_deletes_the_bytes_from_the_file(tmp_path: Path) -> None:
    registry = _open(tmp_path, retention_days=30)
    registry.issue("OLD-1")
    registry.issue("NEW-1")
    registry.record_scan("OLD-1", _scan(hour=0), now=H0)
    registry.record_scan("NEW-1", _scan(hour=24 * 29), now=_hours(24 * 29))
    path = Path(str(registry.engine.url.database))
    assert _scan_tag(registry, "OLD-1") in path.read_bytes()  # the grep below would see it
    assert registry.purge(now=_hours(24 * 31)) == 1
    registry.close()
    data = path.read_bytes()
    assert _scan_tag(registry, "OLD-1") not in data and _scan_tag(registry, "NEW-1") in data
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM qr_scans").fetchone() == (1,)  # deleted, not hidden
    assert not [p for p in path.parent.iterdir() if p.name.endswith(("-wal", "-journal"))]


def test_every_write_deletes_expired_rows_too(tmp_path: Path) -> None:
    registry = _open(tmp_path, retention_days=30)
    registry.issue("OLD-2")
    registry.issue("NEW-2")
    registry.record_scan("OLD-2", _scan(hour=0), now=H0)
    path = Path(str(registry.engine.url.database))
    assert _scan_tag(registry, "OLD-2") in path.read_bytes()
    registry.record_scan("NEW-2", _scan(hour=24 * 31), now=_hours(24 * 31))  # no purge() call: secure_delete alone
    registry.close()
    assert _scan_tag(registry, "OLD-2") not in path.read_bytes()


# --- the curious registry operator ----------------------------------------------------------------------------
def _world(tmp_path: Path, name: str, people: dict[str, list[str]]) -> bytes:
    """A day of scans: each person scans their serials from their own phone in the same region and hour."""
    registry = IssuerRegistry.open(f"sqlite:///{tmp_path / 'reg' / name}", "acme",
                                   tag_key_path=tmp_path / "reg" / "tags.key")   # one issuer key, two worlds
    for serial in ("SN-A", "SN-B", "SN-C", "SN-D"):
        registry.issue(serial)
    turns = max(len(s) for s in people.values())
    for turn in range(turns):  # each person's scans arrive back to back, people interleaved
        for person in sorted(people):
            serials = people[person]
            if turn < len(serials):
                # the phone knows who it is and where it is; none of it fits into a ScanEvent
                _device, _user, _gps = f"phone-of-{person}", f"user-{person}@example.com", "22.28552,114.15769"
                registry.record_scan(serials[turn], ScanEvent("wec", H0, "genuine"), now=H0)
    registry.purge(now=H0)
    registry.close()
    return (tmp_path / "reg" / name).read_bytes()


def test_operator_cannot_link_two_serials_to_one_person(tmp_path: Path) -> None:
    """The operator reads the whole database file. In world 1 Pat scans A and B and Quinn C and D; in world 2
    Pat scans A and C and Quinn B and D. The files are byte for byte the same, so nothing in them (no field,
    no row order, no page layout) can say which serials one person scanned."""
    world1 = _world(tmp_path, "w1.db", {"pat": ["SN-A", "SN-B"], "quinn": ["SN-C", "SN-D"]})
    world2 = _world(tmp_path, "w2.db", {"pat": ["SN-A", "SN-C"], "quinn": ["SN-B", "SN-D"]})
    assert world1 == world2
    for secret in (b"phone-of-pat", b"user-pat", b"22.285", b"pat", b"quinn"):
        assert secret not in world1
    with sqlite3.connect(tmp_path / "reg" / "w1.db") as raw:
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == {"qr_items", "qr_scans"}
        columns = {t: [r[1] for r in raw.execute(f"PRAGMA table_info({t})")] for t in sorted(tables)}
        assert columns == {"qr_items": ["item_tag", "code_digest", "single_use", "consumed"],
                           "qr_scans": ["scan_tag", "hour", "region", "verdict", "scans"]}
        with pytest.raises(sqlite3.OperationalError):  # no hidden insertion counter either
            raw.execute("SELECT rowid FROM qr_scans")
        rows = raw.execute("SELECT scan_tag, hour, region, verdict, scans FROM qr_scans").fetchall()
    assert len(rows) == 4 and len({r[1:] for r in rows}) == 1  # all alike but the per-serial pseudonym
    registry = IssuerRegistry.open("sqlite://", "acme", tag_key_path=tmp_path / "reg" / "tags.key")
    item_tags = {registry._tag(b"item", s) for s in ("SN-A", "SN-B")}
    assert not item_tags & {r[0] for r in rows}  # scan rows cannot be joined to issued items without the serial


def test_public_api_offers_no_query_but_by_serial() -> None:
    public = {name for name in dir(IssuerRegistry) if not name.startswith("_")}
    assert public == {"open", "close", "issue", "issue_code", "check_code", "record_scan", "history", "purge",
                      "count_items"}


def test_registry_file_is_private(tmp_path: Path) -> None:
    registry = _open(tmp_path)
    path = Path(str(registry.engine.url.database))
    registry.issue("SN-P")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(RegistryError, match="positive"):
        RegistryPolicy(retention_days=0)
