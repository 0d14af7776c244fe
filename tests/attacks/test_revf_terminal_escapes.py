"""REVF-7 (fixed), as found: `sampan fraud scan` prints names taken from its inputs (a bank name from the detector
file's ``thresholds``, image paths) to the terminal with rich markup escaped but control characters kept: an ESC
sequence in a crafted detector file's bank name reaches the operator's terminal (clear screen, retitle, hide text,
fake "real" lines). Role: an attacker handing a bank a detector file.
"""

from __future__ import annotations

import json
from pathlib import Path

from _revf_fraud import fixed_detector, render
from typer.testing import CliRunner

from sampan.cli import app

runner = CliRunner()
BANK = "bank\x1b[2J\x1b[1;32mreal\x1b[0m"


def test_scan_output_carries_no_control_characters_from_the_detector_file(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "detector.json"
    fixed_detector().save(path)
    data = json.loads(path.read_text())
    data["threshold_scope"] = "bank"
    data["thresholds"] = {BANK: {"threshold": 0.5, "fpr": 0.25, "n_real_validation": 4}}
    path.write_text(json.dumps(data))
    image = tmp_path / "doc.png"
    Image.fromarray(render(2)).save(image)
    result = runner.invoke(app, ["fraud", "scan", str(image), "--detector", str(path), "--out", str(tmp_path / "o")])
    # one bank in the file: --bank may be left out, so the name comes from the file alone
    assert result.exit_code in (0, 10), result.output
    assert "\x1b" not in result.output, repr(result.output[:200])
