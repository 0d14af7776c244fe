"""REVF-4 (fixed): `sampan fraud scan` and `sampan fraud report` read the detector file / verdict record through
`sampan.fraud.detector.read_json_file`, the reader `Detector.load` uses (size cap, UTF-8, nesting depth): a deeply
nested or oversized file is one ConfigError line naming the file (exit 2, the usage/config category), not "internal
error: RecursionError", and nothing is written. Role: an attacker handing a bank a crafted file.
"""

from __future__ import annotations

import json
from pathlib import Path

from _revf_fraud import fixed_detector, render
from typer.testing import CliRunner

from sampan.cli import app
from sampan.fraud.detector import MAX_DETECTOR_BYTES

runner = CliRunner()


def _image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "doc.png"
    Image.fromarray(render(3)).save(path)
    return path


def _error_names(output: str, path: Path) -> None:
    assert "internal error" not in output and "Traceback" not in output, output
    assert str(path) in output.replace("\n", ""), output


def test_scan_with_a_deeply_nested_detector_file_is_one_error_naming_it(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    result = runner.invoke(app, ["fraud", "scan", str(_image(tmp_path)), "--detector", str(deep),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    _error_names(result.output, deep)


def test_report_with_a_deeply_nested_record_is_one_error_naming_it(tmp_path: Path) -> None:
    deep = tmp_path / "record.json"
    deep.write_text("{\"a\":" * 100_000 + "1" + "}" * 100_000)
    result = runner.invoke(app, ["fraud", "report", str(deep)])
    assert result.exit_code == 2, result.output
    _error_names(result.output, deep)


def test_scan_refuses_a_detector_file_over_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    fixed_detector().save(path)
    data = json.loads(path.read_text())
    data["provenance"] = {"padding": "x" * (MAX_DETECTOR_BYTES + 1024)}
    path.write_text(json.dumps(data))
    result = runner.invoke(app, ["fraud", "scan", str(_image(tmp_path)), "--detector", str(path),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output  # before the fix: it scanned (exit 0 or 10)
    _error_names(result.output, path)
    assert not (tmp_path / "out").exists()
