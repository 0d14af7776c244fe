"""REVF-3: the copy a bank keeps (`operating_point.for_bank`, written by `sampan fraud train` to
WORK_DIR/<bank>/detector.json) still carries the other banks' figures.

`for_bank` drops the other banks' ``thresholds`` entries and their ``validation.banks`` figures, but keeps
``provenance.threshold`` (the LOWEST bank threshold: another bank's, exactly, when that bank is the lowest) and
``provenance.validation.pooled`` (counts, FPR and FNR summed over all banks: minus its own, the others'). Role: a
curious other bank reading its own copy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _revf_fraud import tiny_build

from sampan.fraud.operating_point import for_bank
from sampan.fraud.training import detector_file


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="REVF-3: a bank's own copy keeps the lowest (another bank's) threshold and "
                                       "the pooled validation counts")
def test_a_banks_copy_holds_nothing_of_the_other_banks(tmp_path: Path) -> None:
    built = tiny_build(tmp_path)
    content = detector_file(built, "test")
    points = built.thresholds
    lowest = min(points, key=lambda b: points[b].threshold)
    other = next(b for b in points if b != lowest)  # the bank whose copy we read
    copy = for_bank(content, other)
    text = json.dumps(copy)
    assert set(copy["thresholds"]) == {other}  # the map is trimmed (this holds)
    assert repr(points[lowest].threshold) not in text, f"{other}'s copy holds {lowest}'s threshold"
    pooled = copy["provenance"]["validation"]["pooled"]
    own = copy["provenance"]["validation"]["banks"][other]
    assert pooled["real_images"] == own["real_images"], "pooled counts reveal the other banks' validation counts"
