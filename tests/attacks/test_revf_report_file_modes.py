"""REVF-8 (fixed), as found: `sampan fraud scan` (and `sampan fraud report`) write the HTML detection report, which
embeds the whole scanned document (a customer's ID card or business document) as a PNG plus zoomed crops, with mode
0644 in a folder made by a plain mkdir: any local user can read the customer's document. The bank's patch tables are
0600 in 0700 folders and `sampan runs holdout` writes its id list 0600; the reports are the one place the raw image
is copied. Role: another local user on the bank's scanning host.
"""

from __future__ import annotations

import stat
from pathlib import Path

from _revf_fraud import fixed_detector, render
from typer.testing import CliRunner

from sampan.cli import app

runner = CliRunner()


def test_the_report_holding_the_scanned_document_is_private(tmp_path: Path) -> None:
    from PIL import Image

    detector = tmp_path / "detector.json"
    fixed_detector().save(detector)
    image = tmp_path / "customer-id.png"
    Image.fromarray(render(6)).save(image)
    out = tmp_path / "out"
    result = runner.invoke(app, ["fraud", "scan", str(image), "--detector", str(detector), "--out", str(out)])
    assert result.exit_code in (0, 10), result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    again = runner.invoke(app, ["fraud", "report", str(out / "customer-id.json"), "--out", str(tmp_path / "r.html")])
    assert again.exit_code == 0, again.output
    for path in (out / "customer-id.html", out / "customer-id.json", tmp_path / "r.html"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path.name}: {oct(path.stat().st_mode)}"
