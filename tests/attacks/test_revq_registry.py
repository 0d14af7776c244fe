"""REVQ (issue 20 review): a counterfeiting issuer and a curious reader of the issuer registry.

Claims checked: one item, one code (REVQ-6: a serial issued without its code no longer lets a second signed
code pass), pseudonymous scan history (REVQ-9: keyed tags, the key outside the database file) and one code
printed on many items (REVQ-13: the heuristic `shared_code` flag).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import sqlite3
import stat
from pathlib import Path

import pytest

import sampan.qr.registry as registry_module
from sampan.qr.keys import generate_issuer_key, public_key_hex
from sampan.qr.payload import ItemCode, sign
from sampan.qr.registry import CodeMismatchError, IssuerRegistry, RegistryError, RegistryPolicy, ScanEvent

KEY = generate_issuer_key("acme")
TRUST = {"acme": public_key_hex(KEY)}
NOW = dt.datetime(2027, 3, 1, 10, tzinfo=dt.UTC)


def test_revq6_a_serial_issued_without_its_code_refuses_a_second_signed_code() -> None:
    registry = IssuerRegistry.open("sqlite://", "acme")
    registry.issue("BAG-0001")  # the bare API: issue(serial) once, no code
    first = sign(ItemCode("BAG-0001", "acme", dt.date(2028, 1, 1)), KEY)
    second = sign(ItemCode("BAG-0001", "acme", dt.date(2029, 1, 1)), KEY)  # re-signed for another item
    event = ScanEvent("wec", NOW, "genuine")
    for text in (first, second):
        with pytest.raises(CodeMismatchError, match="issued without its code"):
            registry.check_code(text, TRUST, event, now=NOW)
    bound = sign(ItemCode("BAG-0003", "acme", dt.date(2028, 1, 1)), KEY)
    registry.issue("BAG-0003", code_text=bound)  # issue with its code: only that code passes
    registry.check_code(bound, TRUST, event, now=NOW)
    with pytest.raises(CodeMismatchError, match="re-issue"):
        registry.check_code(sign(ItemCode("BAG-0003", "acme", dt.date(2029, 1, 1)), KEY), TRUST, event, now=NOW)
    with pytest.raises(RegistryError, match="not the SHA-256"):
        registry.issue("BAG-0004", code_text=bound, code_digest=b"\0" * 32)


def test_revq9_a_database_reader_cannot_map_scan_rows_to_sequential_serials(tmp_path: Path) -> None:
    path = tmp_path / "reg" / "registry.db"
    registry = IssuerRegistry.open(f"sqlite:///{path}", "acme")
    for n in range(50):
        registry.issue(f"SN-{n:06d}")
    for n, region in ((7, "wec"), (31, "ws1")):
        registry.record_scan(f"SN-{n:06d}", ScanEvent(region, NOW, "genuine"), now=NOW)
    registry.close()
    key_file = Path(f"{path}.tagkey")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(key_file.read_bytes()) == 32
    assert key_file.read_bytes() not in path.read_bytes()  # the key is not in the database file
    # The reader: the database file only, the old unkeyed formula and the keyed one under guessed keys.
    guesses: dict[bytes, int] = {}
    for n in range(10_000):
        serial = f"SN-{n:06d}".encode()
        guesses[hashlib.sha256(b"sampan-qr-scan/1\x00acme\x00" + serial).digest()] = n
        for key in (b"", b"\0" * 32, b"acme"):
            guesses[hmac.new(key, b"sampan-qr-scan/2\x00acme\x00" + serial, hashlib.sha256).digest()] = n
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT scan_tag, region FROM qr_scans").fetchall()
    assert len(rows) == 2
    recovered = {guesses[tag]: region for tag, region in rows if tag in guesses}
    assert recovered == {}, f"serials and their scan regions recovered: {recovered}"
    # the issuer, with the key file, still reaches the history through the serial
    reopened = IssuerRegistry.open(f"sqlite:///{path}", "acme")
    assert [r.region for r in reopened.history("SN-000031", now=NOW)] == ["ws1"]
    reopened.close()
    key_file.chmod(0o644)
    with pytest.raises(RegistryError, match="accessible to other users"):
        IssuerRegistry.open(f"sqlite:///{path}", "acme")


def test_revq13_one_code_on_many_items_is_eventually_flagged() -> None:
    registry = IssuerRegistry.open("sqlite://", "acme")
    text = registry.issue_code(ItemCode("BAG-0002", "acme", dt.date(2028, 1, 1)), KEY)
    flags: set[str] = set()
    for day in range(60):  # 60 counterfeit bags carrying the same genuine code, one buyer checks per day
        when = NOW + dt.timedelta(days=day)
        _code, result = registry.check_code(text, TRUST, ScanEvent("wec", when, "genuine"), now=when)
        flags.update(result.flags)
    assert "shared_code" in flags, "60 items sharing one code raised no flag"
    # an owner who checks the item a few times in a few places raises nothing
    owned = registry.issue_code(ItemCode("BAG-0005", "acme", dt.date(2028, 1, 1)), KEY)
    for day, region in ((0, "wec"), (3, "wec"), (40, "ws1"), (41, "wec")):
        when = NOW + dt.timedelta(days=day)
        assert registry.check_code(owned, TRUST, ScanEvent(region, when, "genuine"), now=when)[1].flags == ()
    # many regions within the retention period (one scan each, days apart: no travel flag) raise it too
    spread = registry.issue_code(ItemCode("BAG-0006", "acme", dt.date(2028, 1, 1)), KEY)
    seen: set[str] = set()
    for day, region in enumerate(("wec", "ws1", "ws0", "wsb", "wt5", "wtw", "wx4")):
        when = NOW + dt.timedelta(days=3 * day)
        seen.update(registry.check_code(spread, TRUST, ScanEvent(region, when, "genuine"), now=when)[1].flags)
    assert "shared_code" in seen


def test_revq13_the_flag_is_documented_as_a_heuristic() -> None:
    doc = " ".join((registry_module.__doc__ or "").split())
    assert "shared_code (HEURISTIC, REVQ-13)" in doc and "a signal for review, not proof" in doc
    assert RegistryPolicy().max_scan_days == 20
