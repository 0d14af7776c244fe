"""REVF-3 (fixed): the copy a bank keeps (`training.bank_file`, written by `sampan fraud train` to
WORK_DIR/<bank>/detector.json; `operating_point.for_bank` for an older multi-bank file) carries nothing of the other
banks: no other bank's threshold (before the fix, ``provenance.threshold`` was the LOWEST bank threshold) and no
pooled validation counts (pooled minus its own gave the others'). Role: a curious other bank reading its copy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _revf_fraud import tiny_build

from sampan.fraud.operating_point import for_bank
from sampan.fraud.training import bank_file, detector_file


@pytest.mark.slow
def test_a_banks_copy_holds_nothing_of_the_other_banks(tmp_path: Path) -> None:
    built = tiny_build(tmp_path)
    points = built.thresholds
    lowest = min(points, key=lambda b: points[b].threshold)
    other = next(b for b in points if b != lowest)  # the bank whose copy we read
    shared = detector_file(built, "test")
    legacy = {**shared, "threshold": points[lowest].threshold,  # a file as written before the fix
              "thresholds": {b: {"threshold": p.threshold, "fpr": p.fpr, "n_real_validation": p.n_real_validation}
                             for b, p in points.items()},
              "provenance": {**shared["provenance"], "threshold": points[lowest].threshold,
                             "validation": built.validation}}
    for copy in (bank_file(built, other, "test"), for_bank(legacy, other)):
        text = json.dumps(copy)
        assert set(copy["thresholds"]) == {other}
        assert repr(points[lowest].threshold) not in text, f"{other}'s copy holds {lowest}'s threshold"
        assert copy["provenance"]["threshold"] == copy["threshold"] == points[other].threshold
        assert set(copy["provenance"]["validation"]) == {"banks"}, "pooled counts reveal the other banks' counts"
        assert set(copy["provenance"]["validation"]["banks"]) == {other}
        assert lowest not in json.dumps(copy["provenance"]["validation"]) and lowest not in json.dumps(
            copy["thresholds"])
