"""REVF-9 (fixed), as found: a verdict record binds the scanned image (SHA-256 of its pixels) but not the detector that
judged it: ``record["detector"]`` holds the file's path and the provenance copied from the file, nothing computed
from the model weights. Two detector files with the same path and provenance but different weights (a swapped or
edited file: zeroed coefficients, an attacker's model) give records whose detector section is identical, so an
auditor of a loan file cannot tell which model produced a verdict, nor check it against the run store's registered
model (whose lineage has arrays_sha256). Role: an insider or forger who can replace the bank's detector file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _revf_fraud import fixed_detector, render
from typer.testing import CliRunner

from sampan.cli import app

runner = CliRunner()


def _scan_record(tmp_path: Path, detector_data: dict[str, Any], tag: str) -> dict[str, Any]:
    from PIL import Image

    detector = tmp_path / "detector.json"  # same path both times
    detector.write_text(json.dumps(detector_data))
    image = tmp_path / "doc.png"
    Image.fromarray(render(8)).save(image)
    out = tmp_path / tag
    result = runner.invoke(app, ["fraud", "scan", str(image), "--detector", str(detector), "--out", str(out)])
    assert result.exit_code in (0, 10), result.output
    return json.loads((out / "doc.json").read_text())


def test_a_verdict_record_identifies_the_model_that_judged(tmp_path: Path) -> None:
    genuine = fixed_detector().to_dict()
    genuine["provenance"] = {"run_id": "20261207-000000-abcdef", "registered_model": "fraud-patch-detector",
                             "registered_version": 1}
    swapped = json.loads(json.dumps(genuine))
    swapped["model"]["coefficients"] = list(np.zeros(len(genuine["model"]["coefficients"])))
    a = _scan_record(tmp_path, genuine, "a")
    b = _scan_record(tmp_path, swapped, "b")
    assert a["verdict"]["score"] != b["verdict"]["score"]  # different models judged
    assert a["detector"] != b["detector"], "the records name the same detector"
    assert a["detector"]["model_sha256"] == fixed_detector().model_sha256()


def test_a_detector_file_whose_model_was_edited_after_writing_is_refused() -> None:
    from sampan.errors import ConfigError
    from sampan.fraud.detector import Detector

    genuine = fixed_detector()
    data = {**genuine.to_dict(), "model_sha256": genuine.model_sha256()}
    assert Detector.from_dict(data, "d.json").model_sha256() == data["model_sha256"]
    data["model"] = {**data["model"], "intercept": 5.0}
    with pytest.raises(ConfigError, match="d.json: field 'model_sha256' does not match"):
        Detector.from_dict(data, "d.json")
