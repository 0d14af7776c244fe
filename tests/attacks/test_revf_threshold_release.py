"""REVF-1 (fixed): a bank's own threshold IS one of its real validation documents' exact scores (an order statistic) and
its validation counts and rates depend on every such score, so none of it may leave the bank.

Before the fix the shared detector file carried every bank's threshold, ``n_real_validation`` and validation figures
(under DP too, uncharged) and said "no validation score left a bank". Now the shared file (`training.detector_file`)
carries the model, slicer, aggregation and the training provenance only; each bank's operating point and figures go to
that bank's own copy (`training.bank_file`). Role: the coordinator/trainer that receives the shared file (or any bank
receiving it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _revf_fraud import fixed_detector, items, render, tiny_build

from sampan.fraud.detector import Detector
from sampan.fraud.training import DetectorBuild, bank_file, bank_thresholds, detector_file


def _image_score(detector: Detector, image: np.ndarray) -> float:
    scores, _ = detector.patch_scores(image)
    return float(detector.aggregate(scores))


def _numbers(value: Any) -> set[float]:
    if isinstance(value, dict):
        return {x for v in value.values() for x in _numbers(v)}
    if isinstance(value, list):
        return {x for v in value for x in _numbers(v)}
    return {float(value)} if isinstance(value, (int, float)) and not isinstance(value, bool) else set()


@pytest.mark.slow
def test_under_dp_no_banks_validation_score_is_in_the_shared_detector_file(tmp_path: Path) -> None:
    built = tiny_build(tmp_path, dp=True)
    assert built.result.dp is not None  # a DP run: the training rows are protected ...
    shared = detector_file(built, "test")
    real_scores = {_image_score(built.detector, image) for _, image, label in items("bank_a", 6, 6, 10)
                   if label == 0}
    assert built.thresholds["bank_a"].threshold in real_scores  # the operating point IS a validation score ...
    # ... so it stays in bank_a's own copy: the shared file holds no threshold and no validation figure
    assert "thresholds" not in shared and "threshold" not in shared
    assert "validation" not in shared["provenance"] and "threshold" not in shared["provenance"]
    assert _numbers(shared) & real_scores == set()
    assert "nothing of any bank's validation" in shared["provenance"]["threshold_note"]
    assert "no validation score left a bank" not in json.dumps(shared)  # the false claim is gone
    own = bank_file(built, "bank_a", "test")
    assert _numbers(own) & real_scores == {built.thresholds["bank_a"].threshold}


def test_one_more_real_validation_document_leaves_the_shared_file_unchanged(tmp_path: Path) -> None:
    """Neighbouring-dataset differential test on what leaves a bank at the threshold stage: D and D + one real
    validation document, model fixed. The bank's own operating point moves (it stays in the bank's copy); the shared
    file, the only thing that leaves, is byte-identical."""
    detector = fixed_detector()
    D = items("bank_a", 8, 4, 10)
    added = ("bank_a-extra", render(77), 0)
    shared = []
    for validation in (D, [*D, added]):
        points, figures = bank_thresholds(detector, {"bank_a": validation}, 0.25)
        built = DetectorBuild(detector, {"run_id": "r", "threshold_note": "n"}, None,  # type: ignore[arg-type]
                              points, "bank", {"banks": figures, "pooled": {}})
        shared.append(json.dumps(detector_file(built, "test"), sort_keys=True))
        assert bank_file(built, "bank_a", "test")["thresholds"]["bank_a"]["n_real_validation"] == \
            sum(1 for _, _, label in validation if label == 0)
    assert shared[0] == shared[1]
