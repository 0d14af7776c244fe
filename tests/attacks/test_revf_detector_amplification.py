"""REVF-6 (fixed), as found: a few-KB crafted detector file multiplies the cost of scanning an ordinary image without
bound.

`Detector.from_dict` accepts any ``top_k`` >= 0 and any slicer with size >= 8 and stride >= 1, and `scan` plus the HTML
report cut, fingerprint and render EVERY patch on the top-k list: size 8, stride 1 and top_k 10^9 turn a 64x64 image
into ~3,250 scored patches and as many zoomed PNG crops in the report (measured at 128x128: 14,641 patches, 9 MB of
HTML, 4 s; linear in pixels, so a 12 Mpx phone photo gives ~12 M patches, GBs of features and of HTML). Role: an
attacker handing a bank a detector file to run `sampan fraud scan` with.
"""

from __future__ import annotations

import pytest
from _revf_fraud import fixed_detector, render

from sampan.errors import ConfigError
from sampan.fraud.detector import Detector
from sampan.fraud.report import render_detection_report, verdict_record

MAX_CROPS = 100  # any sane cap on the suspicious patches a report shows


def test_a_crafted_detector_cannot_make_a_report_render_thousands_of_crops() -> None:
    data = fixed_detector().to_dict()
    data["slicer"] = {"size": 8, "stride": 1, "flat_std_min": 0.0}
    data["top_k"] = 10**9
    try:
        detector = Detector.from_dict(data, "crafted detector file")
    except ConfigError:
        return  # refused: the secure outcome
    image = render(4)
    verdict = detector.scan(image)
    record = verdict_record(verdict, image, image_path="doc.png", detector_path="crafted.json",
                            aggregation=detector.aggregation, provenance={}, data_note="test")
    html = render_detection_report(record, image)
    assert html.count("<figure><img") <= MAX_CROPS, html.count("<figure><img")


@pytest.mark.parametrize(("field", "change"), [
    ("top_k", {"top_k": 51}),
    ("slicer.size", {"slicer": {"size": 8, "stride": 8, "flat_std_min": 2.0}}),
    ("slicer.stride", {"slicer": {"size": 32, "stride": 7, "flat_std_min": 2.0}}),
    ("aggregate_k", {"aggregate_k": 10**6}),
])
def test_each_cost_setting_out_of_bounds_is_refused_naming_the_field(field: str, change: dict[str, object]) -> None:
    data = {**fixed_detector().to_dict(), **change}
    with pytest.raises(ConfigError, match=f"crafted.json: detector field '{field}'"):
        Detector.from_dict(data, "crafted.json")


def test_an_image_with_too_many_patches_is_refused_before_fingerprinting(monkeypatch: pytest.MonkeyPatch) -> None:
    from sampan.errors import DataError
    from sampan.fraud import detector as module

    monkeypatch.setattr(module, "MAX_PATCHES_PER_IMAGE", 3)  # a 64x64 image gives 4 patches of 32x32
    monkeypatch.setattr(module, "image_features", lambda *a, **k: (_ for _ in ()).throw(AssertionError("cut")))
    with pytest.raises(DataError, match="gives 4 patches with detector field 'slicer'"):
        fixed_detector().scan(render(4))
