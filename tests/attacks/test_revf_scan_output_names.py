"""REVF-5 (fixed), as found: `sampan fraud scan` names its outputs by image stem, adding -2, -3 ... for a repeated stem,
without checking the new name against the other images' stems: scanning ``a.png``, ``a-2.png`` and ``a.jpg`` writes
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


@pytest.mark.parametrize("names", [("a.png", "a-2.png", "a.jpg"), ("a.png", "a.jpg", "a-2.png"),
                                   ("A.png", "a.jpg", "a-2.png", "x/a.png")])
def test_every_scanned_image_keeps_its_own_verdict_file(tmp_path: Path, names: tuple[str, ...]) -> None:
    from PIL import Image

    detector = tmp_path / "detector.json"
    fixed_detector().save(detector)
    (tmp_path / "x").mkdir()
    images = [tmp_path / name for name in names]
    for seed, path in enumerate(images):
        Image.fromarray(render(seed + 1)).save(path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["fraud", "scan", *map(str, images), "--detector", str(detector), "--out", str(out)])
    assert result.exit_code in (0, 10), result.output
    recorded = {json.loads(p.read_text())["image"]["path"] for p in out.glob("*.json")}
    assert len({p.name.casefold() for p in out.glob("*.json")}) == len(images)  # distinct on a case-blind disk too
    assert recorded == {str(p.resolve()) for p in images}, sorted(recorded)


def test_a_failed_write_leaves_nothing_of_the_scan(tmp_path: Path) -> None:
    """Noticed by REVF: when one output cannot be written (here ``b.html`` is a folder), no output of this scan is
    left behind (before: ``a``'s files stayed and the exit code lost the FAKE_FOUND signal)."""
    from PIL import Image

    detector = tmp_path / "detector.json"
    fixed_detector().save(detector)
    images = [tmp_path / "a.png", tmp_path / "b.png"]
    for seed, path in enumerate(images):
        Image.fromarray(render(seed + 1)).save(path)
    out = tmp_path / "out"
    (out / "b.html").mkdir(parents=True)
    result = runner.invoke(app, ["fraud", "scan", *map(str, images), "--detector", str(detector), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "b.html" in result.output.replace("\n", "")
    assert sorted(p.name for p in out.iterdir()) == ["b.html"]  # nothing written, no temporary left
