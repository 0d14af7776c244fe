"""`sampan qr keygen | issue | verify | check-url | report`: the round trip through files, the exit codes (0 genuine,
10 suspicious, 2 bad input), re-issue refused, and one error line naming the file or field, nothing half-written."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sampan.cli import app
from sampan.cli.qr import SUSPICIOUS_EXIT

runner = CliRunner()


def _invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["qr", *args])


def _error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, output
    return " ".join(lines[lines.index(errors[0]):])


def _json(output: str) -> dict:  # type: ignore[type-arg]
    return json.loads(output[output.index("{"):])


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    tmp_path.chmod(0o700)
    r = _invoke("keygen", "--issuer", "acme", "--out", str(tmp_path / "acme.key"), "--cdp-out",
                str(tmp_path / "acme.cdp"))
    assert r.exit_code == 0, r.output
    return tmp_path


def _issue(folder: Path, serial: str, out: str = "code.png", *extra: str):  # type: ignore[no-untyped-def]
    return _invoke("issue", "--key", str(folder / "acme.key"), "--serial", serial, "--expiry", "2031-12-31",
                   "--cdp-key", str(folder / "acme.cdp"), "--out", str(folder / out), *extra)


def _verify(folder: Path, image: str, *extra: str):  # type: ignore[no-untyped-def]
    return _invoke("verify", str(folder / image), "--issuers", str(folder / "acme.key.public.json"),
                   "--cdp-key", str(folder / "acme.cdp"), *extra)


def test_keygen_writes_private_keys_0600_and_never_overwrites(folder: Path) -> None:
    for name in ("acme.key", "acme.cdp"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    trust = json.loads((folder / "acme.key.public.json").read_text())
    assert list(trust) == ["acme"] and len(trust["acme"]) == 64
    before = (folder / "acme.key").read_bytes()
    r = _invoke("keygen", "--issuer", "acme", "--out", str(folder / "acme.key"))
    assert r.exit_code == 2 and "acme.key" in _error_line(r.output)
    assert (folder / "acme.key").read_bytes() == before


def test_issue_verify_report_round_trip_and_reissue_refused(folder: Path) -> None:
    db = str(folder / "reg.db")
    r = _issue(folder, "SN-1", "code.png", "--registry", db)
    assert r.exit_code == 0, r.output
    r = _verify(folder, "code.png", "--registry", db, "--region", "wec", "--out", str(folder / "v.json"))
    assert r.exit_code == 0, r.output
    verdict = _json(r.output)
    assert verdict["verdict"] == "genuine" and verdict["checks"]["cdp"]["verdict"] == "original"
    assert verdict["code"]["serial"] == "SN-1" and verdict["checks"]["registry"]["flags"] == []
    # one item, one code: the issuer cannot issue the serial again, and nothing is written
    r = _issue(folder, "SN-1", "again.png", "--registry", db)
    assert r.exit_code != 0 and "SN-1" in _error_line(r.output)
    assert not (folder / "again.png").exists()
    r = _invoke("report", str(folder / "v.json"), "--out", str(folder / "r.html"))
    assert r.exit_code == 0, r.output
    page = (folder / "r.html").read_text()
    assert "genuine" in page and "SN-1" in page and "<script" not in page


def test_a_code_not_in_the_registry_is_suspicious(folder: Path) -> None:
    assert _issue(folder, "SN-2").exit_code == 0   # signed, but never registered
    r = _verify(folder, "code.png", "--registry", str(folder / "reg.db"), "--region", "wec")
    assert r.exit_code == SUSPICIOUS_EXIT, r.output
    assert _json(r.output)["checks"]["registry"] == {"refused": "UnknownSerialError"}


def test_forged_signature_and_expiry_are_suspicious(folder: Path) -> None:
    from sampan.qr.codec import render_qr
    from sampan.qr.keys import generate_issuer_key
    from sampan.qr.payload import ItemCode, sign

    forger = generate_issuer_key("acme")   # same name, another key
    Image.fromarray(render_qr(sign(ItemCode("SN-3", "acme", dt.date(2031, 1, 1)), forger))).save(folder / "f.png")
    r = _invoke("verify", str(folder / "f.png"), "--issuers", str(folder / "acme.key.public.json"))
    assert r.exit_code == SUSPICIOUS_EXIT and _json(r.output)["checks"]["signature"].endswith("BadSignatureError")
    r = _invoke("issue", "--key", str(folder / "acme.key"), "--serial", "OLD-1", "--expiry", "2020-01-01",
                "--out", str(folder / "old.png"))
    assert r.exit_code == 0, r.output
    r = _invoke("verify", str(folder / "old.png"), "--issuers", str(folder / "acme.key.public.json"))
    assert r.exit_code == SUSPICIOUS_EXIT and "ExpiredCodeError" in _json(r.output)["checks"]["signature"]


def test_printed_original_passes_and_its_photocopy_is_flagged(folder: Path) -> None:
    """Through the simulated channel (seeded): the phone capture of the print is genuine, of a photocopy not."""
    from sampan.qr.channel import PrintCaptureChannel, rng_for
    from sampan.qr.copies import photocopy

    assert _issue(folder, "SN-4").exit_code == 0
    ink = np.array(Image.open(folder / "code.png")) < 128
    channel = PrintCaptureChannel()
    rng = rng_for(7)
    sheet = channel.print_sheet(ink, rng)
    Image.fromarray(channel.capture(sheet, rng)).save(folder / "photo.png")
    Image.fromarray(channel.capture(photocopy(sheet, rng), rng)).save(folder / "copy.png")
    r = _verify(folder, "photo.png")
    assert r.exit_code == 0, r.output
    r = _verify(folder, "copy.png")
    assert r.exit_code == SUSPICIOUS_EXIT, r.output
    assert _json(r.output)["checks"]["cdp"]["verdict"] == "copy"


def test_bad_inputs_are_one_line_errors_exit_2(folder: Path) -> None:
    r = _verify(folder, "missing.png")
    assert r.exit_code == 2 and "missing.png" in _error_line(r.output)
    Image.fromarray(np.full((64, 64), 255, dtype=np.uint8)).save(folder / "blank.png")
    r = _verify(folder, "blank.png")
    assert r.exit_code == 2 and "no readable QR code" in _error_line(r.output)
    assert _issue(folder, "SN-5").exit_code == 0
    r = _verify(folder, "code.png", "--registry", str(folder / "reg.db"), "--region", "wecnmq")
    assert r.exit_code == 2 and "region" in _error_line(r.output)
    r = _issue(folder, "SN-6", "code.jpg")
    assert r.exit_code == 2 and "code.jpg" in _error_line(r.output)
    r = _invoke("issue", "--key", str(folder / "acme.key"), "--serial", "bad serial!", "--expiry", "2031-01-01",
                "--out", str(folder / "x.png"))
    assert r.exit_code == 2 and "serial" in _error_line(r.output) and not (folder / "x.png").exists()
    r = _invoke("issue", "--key", str(folder / "acme.key"), "--serial", "S", "--expiry", "31/12/2031",
                "--out", str(folder / "x.png"))
    assert r.exit_code == 2 and "--expiry" in _error_line(r.output)
    (folder / "v.json").write_text(json.dumps({"format": "sampan-qr-verdict/1", "verdict": "maybe"}))
    r = _invoke("report", str(folder / "v.json"), "--out", str(folder / "r.html"))
    assert r.exit_code == 2 and "'verdict'" in _error_line(r.output) and not (folder / "r.html").exists()


def test_report_escapes_the_scanned_text(tmp_path: Path) -> None:
    from sampan.qr.report import VERDICT_FORMAT, render_html

    page = render_html({"format": VERDICT_FORMAT, "image": "<img src=x onerror=alert(1)>", "verdict": "suspicious",
                        "reasons": ["<script>alert(1)</script>"], "checks": {}, "code": None})
    assert "<script>" not in page and "<img src=x" not in page and "&lt;script&gt;" in page


def test_check_url_and_payment_payloads(tmp_path: Path) -> None:
    from tests.qr.url_corpus import PAYMENT_CORPUS

    r = _invoke("check-url", "https://www.hsbc.com.hk/")
    assert r.exit_code == 0 and _json(r.output)["verdict"] == "ok"
    (tmp_path / "u.txt").write_text("https://hsbc.com.hk@203.0.113.7/login\n")
    r = _invoke("check-url", "--file", str(tmp_path / "u.txt"))
    assert r.exit_code == SUSPICIOUS_EXIT and _json(r.output)["verdict"] == "block"
    good = next(c for c in PAYMENT_CORPUS if c.label == "benign")
    bad = next(c for c in PAYMENT_CORPUS if c.label == "malicious" and c.payload.startswith("000201"))
    r = _invoke("check-url", good.payload, "--merchant", good.expected.name, *(
        ("--merchant-proxy", good.expected.proxy) if good.expected.proxy else ()))
    assert r.exit_code == 0, r.output
    r = _invoke("check-url", bad.payload, "--merchant", bad.expected.name, *(
        ("--merchant-proxy", bad.expected.proxy) if bad.expected.proxy else ()))
    assert r.exit_code == SUSPICIOUS_EXIT, r.output
    r = _invoke("check-url", good.payload)
    assert r.exit_code == 2 and "--merchant" in _error_line(r.output)
    r = _invoke("check-url")
    assert r.exit_code == 2 and "--file" in _error_line(r.output)
