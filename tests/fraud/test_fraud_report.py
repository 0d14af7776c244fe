"""The HTML detection report of one scan: verdict, score, threshold and FPR, heatmap overlay, suspicious patches and
provenance; self-contained, escaped, well-formed, checked against the scanned image, written atomically."""

from __future__ import annotations

import base64
import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from sampan.errors import ConfigError, DataError
from sampan.fraud.detector import Detector
from sampan.fraud.fingerprint import FEATURE_NAMES
from sampan.fraud.report import check_record, render_detection_report, verdict_record, write_detection_report
from sampan.fraud.scorer import LinearPatchModel

F = len(FEATURE_NAMES)
PROVENANCE = {"run_id": "20261207-000000-abcdef", "banks": ["bank_a", "bank_<b>"], "model": "logistic", "rounds": 4,
              "dp": {"epsilon": 2.0, "delta": 1e-5, "max_grad_norm": 1.0}, "max_patches_per_doc": 16,
              "privacy_unit": "one record = one image patch; k = 16"}


def _image(seed: int = 3, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(60, 200, size)[None, :, None] + rng.normal(scale=18, size=(size, size, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def _detector(threshold: float = 0.5) -> Detector:
    coef = np.zeros(F)
    coef[0] = 1.0  # a fixed, readable model: the first fingerprint feature raises the fake probability
    return Detector(LinearPatchModel(coef, 0.0, np.zeros(F), np.ones(F)), threshold=threshold, fpr=0.05, top_k=3)


def _record(image: np.ndarray, threshold: float = 0.5, path: str = "/scans/doc.png") -> dict:
    detector = _detector(threshold)
    return verdict_record(detector.scan(image), image, image_path=path, detector_path="det.json",
                          aggregation=detector.aggregation, provenance=PROVENANCE,
                          data_note="Generated locally <proxies> & nothing else.")


def _parse(html: str) -> ET.Element:
    assert html.startswith("<!DOCTYPE html>\n")
    return ET.fromstring(html.split("\n", 1)[1])


def test_the_report_shows_verdict_threshold_heatmap_patches_and_provenance() -> None:
    image = _image()
    record = _record(image, threshold=1.0)  # every score is below 1: judged fake
    html = render_detection_report(record, image)
    root = _parse(html)
    text = "".join(root.itertext())
    assert "Document judged FAKE: doc.png" in text
    assert "FPR 5.0% on real images" in text and f"{record['verdict']['score']:.3f}" in text
    assert "20261207-000000-abcdef" in text and "bank_a, bank_<b>" in text and "epsilon 2.0" in text
    assert "one record = one image patch" in text and "Generated locally <proxies> & nothing else." in text
    images = [el.get("src", "") for el in root.iter("img")]
    assert len(images) == 1 + 3  # the overlay and the top-3 crops
    for src in images:
        assert src.startswith("data:image/png;base64,")
        from PIL import Image

        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert "default-src 'none'" in html and "http://" not in html and "https://" not in html
    assert "<script" not in html


def test_text_from_files_and_provenance_is_escaped() -> None:
    image = _image()
    record = _record(image, path="/scans/<b onmouseover=alert(1)>.png")
    record["detector"]["provenance"]["model"] = "<img src=x onerror=alert(1)>"
    html = render_detection_report(record, image)
    assert "<b onmouseover" not in html and "<img src=x" not in html
    assert "&lt;b onmouseover=alert(1)&gt;.png" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    _parse(html)


def test_a_real_verdict_says_real() -> None:
    image = _image(5)
    record = _record(image, threshold=0.0)
    assert record["verdict"]["is_fake"] is False
    assert "Document judged REAL" in "".join(_parse(render_detection_report(record, image)).itertext())


def test_a_different_image_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    image = _image()
    record = _record(image)
    other = image.copy()
    other[0, 0, 0] ^= 1  # one bit: another image
    target = tmp_path / "report.html"
    with pytest.raises(DataError, match="not the image that was scanned"):
        write_detection_report(target, record, other, image_name="swapped.png")
    assert list(tmp_path.iterdir()) == []
    write_detection_report(target, record, image)
    assert target.is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_record_that_is_not_a_verdict_is_refused_naming_the_field() -> None:
    record = _record(_image())
    with pytest.raises(ConfigError, match="'format'"):
        check_record({"format": "other"}, "x.json")
    broken = {**record, "verdict": {**record["verdict"], "threshold": "high"}}
    with pytest.raises(ConfigError, match="verdict.threshold"):
        check_record(broken, "x.json")
    uneven = {**record, "patches": {"boxes": [[0, 0, 32, 32]], "scores": []}}
    with pytest.raises(ConfigError, match="patches.boxes"):
        check_record(uneven, "x.json")


def test_the_record_keeps_every_patch_and_the_image_hash() -> None:
    image = _image()
    record = _record(image)
    assert len(record["patches"]["boxes"]) == len(record["patches"]["scores"]) == record["verdict"]["n_patches"] > 0
    assert len(record["image"]["sha256"]) == 64 and record["image"]["width"] == 96
    assert record["verdict"]["aggregation"] == "mean_logit"


def test_the_report_names_the_operating_point_used() -> None:
    image = _image()
    detector = _detector(0.4)
    point = {"bank": "bank_<b>", "scope": "bank", "threshold": 0.4, "fpr": 0.05, "n_real_validation": 20}
    record = verdict_record(detector.scan(image), image, image_path="/scans/doc.png", detector_path="det.json",
                            aggregation=detector.aggregation, provenance=PROVENANCE, data_note="n/a",
                            operating_point=point)
    assert record["operating_point"] == point
    html = render_detection_report(record, image)
    text = "".join(_parse(html).itertext())
    assert "bank bank_<b>'s own threshold, fixed on 20 real validation images of that bank only" in text
    assert "bank_<b>'s own; FPR 5.0% on real images" in text and "<b>'s" not in html  # escaped in the page
    pooled = {**record, "operating_point": {**point, "scope": "pooled", "bank": None}}
    assert "scores released to the trainer" in "".join(_parse(render_detection_report(pooled, image)).itertext())
    older = {k: v for k, v in record.items() if k != "operating_point"}  # a record from before per-bank thresholds
    assert "operating point not recorded" in "".join(_parse(render_detection_report(older, image)).itertext())
    with pytest.raises(ConfigError, match="'operating_point'"):
        check_record({**record, "operating_point": "bank_a"}, "x.json")
