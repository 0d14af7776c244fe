"""REVQ (issue 20 review): a counterfeiting issuer and a curious reader of the issuer registry.

Claims checked: one item, one code ("not even the manufacturer can reuse a code") and pseudonymous scan
history ("reachable only through the serial"). Each test asserts the SECURE outcome and is a strict xfail
until the finding is fixed (ids in /work/helpers/REVQ_findings.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
from pathlib import Path

import pytest

from sampan.qr.keys import generate_issuer_key, public_key_hex
from sampan.qr.payload import ItemCode, sign
from sampan.qr.registry import CodeMismatchError, IssuerRegistry, ScanEvent

KEY = generate_issuer_key("acme")
TRUST = {"acme": public_key_hex(KEY)}
NOW = dt.datetime(2027, 3, 1, 10, tzinfo=dt.UTC)


@pytest.mark.xfail(strict=True, reason="REVQ-6: a serial recorded with issue() keeps no code digest, so the issuer "
                   "can sign any number of different codes for it and check_code accepts them all")
def test_revq6_a_serial_issued_without_its_code_refuses_a_second_signed_code() -> None:
    registry = IssuerRegistry.open("sqlite://", "acme")
    registry.issue("BAG-0001")  # the documented API: issue(serial) once
    first = sign(ItemCode("BAG-0001", "acme", dt.date(2028, 1, 1)), KEY)
    second = sign(ItemCode("BAG-0001", "acme", dt.date(2029, 1, 1)), KEY)  # re-signed for another item
    event = ScanEvent("wec", NOW, "genuine")
    registry.check_code(first, TRUST, event, now=NOW)
    with pytest.raises(CodeMismatchError):
        registry.check_code(second, TRUST, event, now=NOW)


@pytest.mark.xfail(strict=True, reason="REVQ-9: scan tags are unkeyed SHA-256 of (issuer, serial); a reader of the "
                   "database file maps every scan row to its serial by hashing the issuer's serial range")
def test_revq9_a_database_reader_cannot_map_scan_rows_to_sequential_serials(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    registry = IssuerRegistry.open(f"sqlite:///{path}", "acme")
    for n in range(50):
        registry.issue(f"SN-{n:06d}")
    for n, region in ((7, "wec"), (31, "ws1")):
        registry.record_scan(f"SN-{n:06d}", ScanEvent(region, NOW, "genuine"), now=NOW)
    registry.close()
    # The reader: no key, only the file and the public tag formula over a guessed serial range.
    guesses = {hashlib.sha256(b"sampan-qr-scan/1\x00acme\x00" + f"SN-{n:06d}".encode()).digest(): n
               for n in range(10_000)}
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT scan_tag, region FROM qr_scans").fetchall()
    assert len(rows) == 2
    recovered = {guesses[tag]: region for tag, region in rows if tag in guesses}
    assert recovered == {}, f"serials and their scan regions recovered: {recovered}"


@pytest.mark.xfail(strict=True, reason="REVQ-13: one genuine code printed on many items is caught only by velocity "
                   "(> 20 scans in 24 h) or travel; a slow drip of one scan a day in one region is never flagged")
def test_revq13_one_code_on_many_items_is_eventually_flagged() -> None:
    registry = IssuerRegistry.open("sqlite://", "acme")
    text = registry.issue_code(ItemCode("BAG-0002", "acme", dt.date(2028, 1, 1)), KEY)
    flags: set[str] = set()
    for day in range(60):  # 60 counterfeit bags carrying the same genuine code, one buyer checks per day
        when = NOW + dt.timedelta(days=day)
        _code, result = registry.check_code(text, TRUST, ScanEvent("wec", when, "genuine"), now=when)
        flags.update(result.flags)
    assert flags, "60 items sharing one code raised no flag"
