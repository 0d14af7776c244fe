"""REVF-5: `sampan fraud scan` names its outputs by image stem, adding -2, -3 ... for a repeated stem, without
checking the new name against the other images' stems: scanning ``a.png``, ``a-2.png`` and ``a.jpg`` writes
``a-2.json``/``a-2.html`` twice, so one image's verdict silently replaces another's (the console line of ``a-2.png``
points to a file that now holds ``a.jpg``'s verdict). Role: whoever names the files handed to a bank.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _revf_fraud import fixed_detector, render
from typer.testing import CliRunner

from sampan.cli import app

runner = CliRunner()


@pytest.mark.xfail(strict=True, reason="REVF-5: colliding output names: one image's verdict overwrites another's")
def test_every_scanned_image_keeps_its_own_verdict_file(tmp_path: Path) -> None:
    from PIL import Image

    detector = tmp_path / "detector.json"
    fixed_detector().save(detector)
    images = [tmp_path / "a.png", tmp_path / "a-2.png", tmp_path / "a.jpg"]
    for seed, path in enumerate(images):
        Image.fromarray(render(seed + 1)).save(path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["fraud", "scan", *map(str, images), "--detector", str(detector), "--out", str(out)])
    assert result.exit_code in (0, 10), result.output
    recorded = {json.loads(p.read_text())["image"]["path"] for p in out.glob("*.json")}
    assert recorded == {str(p.resolve()) for p in images}, sorted(recorded)
