"""`sampan watermark keygen | embed | detect | attack-report`: the round trip through files, the exit codes, and
one clear error line naming the file for each bad input, with nothing half-written."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sampan.cli import app
from sampan.cli.watermark import NOT_MARKED_EXIT, bits_to_hex, payload_bits

runner = CliRunner()


def _invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["watermark", *args])


def _error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, output
    return " ".join(lines[lines.index(errors[0]):])  # rich may wrap the one message


def _picture(side: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    base = 120 + 50 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    rgb = np.stack([base, 0.8 * base + 30, 255 - base], axis=2) + rng.normal(0, 10, (side, side, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    tmp_path.chmod(0o700)
    Image.fromarray(_picture()).save(tmp_path / "photo.png")
    assert _invoke("keygen", "--out", str(tmp_path / "key.json")).exit_code == 0
    return tmp_path


def test_payload_parsing_round_trips() -> None:
    assert bits_to_hex(payload_bits("a1b2c3d4", None, 32)) == "a1b2c3d4"
    assert bits_to_hex(payload_bits(None, "AI", 32)) == "41490000"
    assert len(payload_bits("00" * 8, None, 64)) == 64


def test_keygen_is_private_and_never_overwrites(folder: Path) -> None:
    key = folder / "key.json"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    result = _invoke("keygen", "--out", str(key))
    assert result.exit_code == 2
    assert "key.json" in _error_line(result.output) and "overwrite" in result.output
    assert key.read_bytes() == before


@pytest.mark.slow
def test_embed_then_detect_round_trip_and_exit_codes(folder: Path) -> None:
    key, photo, marked = folder / "key.json", folder / "photo.png", folder / "marked.png"
    result = _invoke("embed", str(photo), "--key", str(key), "--message", "AI!", "--out", str(marked))
    assert result.exit_code == 0, result.output
    assert "PSNR" in result.output
    found = _invoke("detect", str(marked), "--key", str(key))
    assert found.exit_code == 0, found.output
    record = json.loads(found.output)
    assert record["marked"] is True and record["message"] == "AI!" and record["bits"] == "41492100"
    assert record["p_value"] <= 1e-6 and record["fpr"] == 1e-6
    assert {"rotation_deg", "scale", "offset"} <= set(record)
    clean = _invoke("detect", str(photo), "--key", str(key), "--fpr", "1e-3")
    assert clean.exit_code == NOT_MARKED_EXIT
    assert json.loads(clean.output)["marked"] is False


@pytest.mark.slow
def test_another_key_does_not_detect_the_mark(folder: Path) -> None:
    key, other, marked = folder / "key.json", folder / "other.json", folder / "marked.png"
    assert _invoke("keygen", "--out", str(other)).exit_code == 0
    assert _invoke("embed", str(folder / "photo.png"), "--key", str(key), "--bits", "deadbeef", "--out",
                   str(marked)).exit_code == 0
    result = _invoke("detect", str(marked), "--key", str(other), "--fpr", "1e-3")
    assert result.exit_code == NOT_MARKED_EXIT


@pytest.mark.parametrize("args, needle", [
    (["missing.png", "--bits", "01020304"], "missing.png"),
    (["key.json", "--bits", "01020304"], "key.json"),
    (["photo.png", "--bits", "0102"], "8 hex digits"),
    (["photo.png", "--bits", "01020304", "--message", "x"], "exactly one"),
    (["photo.png", "--message", "too long"], "--message"),
])
def test_embed_errors_name_the_input_and_write_nothing(folder: Path, args: list[str], needle: str) -> None:
    resolved = [str(folder / a) if a.endswith((".png", ".json")) else a for a in args]
    out = folder / "out.png"
    result = _invoke("embed", *resolved, "--key", str(folder / "key.json"), "--out", str(out))
    assert result.exit_code == 2, result.output
    assert needle in _error_line(result.output)
    assert not out.exists()


def test_bad_output_and_readable_key_are_refused(folder: Path) -> None:
    key = folder / "key.json"
    gif = _invoke("embed", str(folder / "photo.png"), "--key", str(key), "--bits", "01020304", "--out",
                  str(folder / "out.gif"))
    assert gif.exit_code == 2 and "out.gif" in _error_line(gif.output)
    os.chmod(key, 0o644)
    loose = _invoke("detect", str(folder / "photo.png"), "--key", str(key))
    assert loose.exit_code == 2 and "key.json" in _error_line(loose.output)
    bad_fpr = _invoke("detect", str(folder / "photo.png"), "--key", str(key), "--fpr", "2")
    assert bad_fpr.exit_code == 2


@pytest.mark.slow
def test_attack_report_writes_json_and_html(folder: Path) -> None:
    key, marked, out = folder / "key.json", folder / "marked.png", folder / "report"
    assert _invoke("embed", str(folder / "photo.png"), "--key", str(key), "--bits", "a1b2c3d4", "--out",
                   str(marked)).exit_code == 0
    result = _invoke("attack-report", str(marked), "--key", str(key), "--out", str(out), "--bits", "a1b2c3d4",
                     "--attacks", "none,jpeg50,rotate5_rescale,crop10", "--seed", "5")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    rows = {r["attack"]: r for r in report["attacks"]}
    assert list(rows) == ["none", "jpeg50", "rotate5_rescale", "crop10"] and report["seed"] == 5
    assert rows["none"]["marked"] and rows["none"]["bit_accuracy"] == 1.0
    assert rows["crop10"]["marked"] is False and "error" in rows["crop10"]  # 81 px: below the detector's minimum
    page = (out / "report.html").read_text()
    assert "<table>" in page and "rotate5_rescale" in page and "<script" not in page
    # A folder holding someone else's files is never replaced.
    (folder / "busy").mkdir()
    (folder / "busy" / "notes.txt").write_text("keep")
    busy = _invoke("attack-report", str(marked), "--key", str(key), "--out", str(folder / "busy"), "--attacks",
                   "none")
    assert busy.exit_code == 2 and "busy" in _error_line(busy.output)
    assert (folder / "busy" / "notes.txt").read_text() == "keep"
    unknown = _invoke("attack-report", str(marked), "--key", str(key), "--out", str(out), "--attacks", "jpeg5")
    assert unknown.exit_code == 2 and "jpeg5" in _error_line(unknown.output)
