"""REVW-6 (fixed): `sampan watermark detect` on an image that is NOT marked printed decoded "bits", a "message" and a
"min_bit_confidence" (Phi(|z|), always >= 0.5 and often > 0.9 for noise), as if a payload had been read.

The decision itself is honest (p-value, marked false, exit 10), but a reader or a script that takes "bits" or
"message" from the JSON gets noise presented as data, with a "confidence" that is not a probability of anything
under H0. Suggested fix: when not marked at --fpr, print "bits": null and "message": null (keep the z-scores for
diagnosis under another name), and rename bit_confidences (they are Phi(|z_i|), not P(bit right)).
Asserted: the not-marked record carries no decoded payload and no strength.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from sampan.cli import app
from sampan.cli.watermark import NOT_MARKED_EXIT

sys.path.insert(0, str(Path(__file__).parent / "review"))
from _revw_wm import natural  # type: ignore[import-not-found]  # noqa: E402


def test_not_marked_record_has_no_payload(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    runner = CliRunner()
    assert runner.invoke(app, ["watermark", "keygen", "--out", str(tmp_path / "key.json")]).exit_code == 0
    Image.fromarray(natural(5, n=256)).save(tmp_path / "plain.png")
    key, plain = str(tmp_path / "key.json"), str(tmp_path / "plain.png")
    result = runner.invoke(app, ["watermark", "detect", plain, "--key", key])
    assert result.exit_code == NOT_MARKED_EXIT, result.output
    record = json.loads(result.output)
    assert record["marked"] is False
    assert record["bits"] is None and record["message"] is None and record["min_bit_strength"] is None
