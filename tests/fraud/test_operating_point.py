"""Per-bank decision thresholds (issue 18): by default each bank fixes its own threshold on its own real validation
images, no bank's images move another bank's threshold, the shared file carries no bank's operating point (each is
in its bank's own copy), and a scan picks the scanning bank's operating point."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sampan.errors import ConfigError
from sampan.fraud import training
from sampan.fraud.bank_tables import BankDataError
from sampan.fraud.detector import Detector
from sampan.fraud.federated import TrainResult, TrainSettings
from sampan.fraud.fingerprint import FEATURE_NAMES
from sampan.fraud.operating_point import for_bank, select_operating_point
from sampan.fraud.scorer import LinearPatchModel
from sampan.fraud.slicer import SlicerConfig
from sampan.fraud.training import BankImages, bank_file, build_detector, detector_file

F = len(FEATURE_NAMES)
SLICER = SlicerConfig(size=32, stride=32)


def _model() -> LinearPatchModel:
    coef = np.zeros(F)
    coef[0] = 1.0  # a fixed model: the first fingerprint feature raises the fake probability
    return LinearPatchModel(coef, 0.0, np.zeros(F), np.ones(F))


def _image(rng: np.random.Generator, noise: float) -> np.ndarray:
    base = np.linspace(60, 200, 64)[None, :, None] + rng.normal(scale=noise, size=(64, 64, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def _bank(name: str, seed: int, noise: float, n: int = 8) -> BankImages:
    rng = np.random.default_rng(seed)
    items = [(f"{name}-{label}-{i}", _image(rng, noise * (1 + label + rng.uniform(0, 1))), label)
             for label in (0, 1) for i in range(n)]
    return BankImages(name, items, f"synthetic {name}")


@pytest.fixture
def fixed_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """The federated run replaced by a fixed shared model: the threshold step alone is under test."""

    def fake_train(banks: Any, *, settings: TrainSettings, dp: Any, **_: Any) -> TrainResult:
        return TrainResult(_model(), "run-x", tuple(b.name for b in banks), settings, dp, None, "unit: test")

    monkeypatch.setattr(training, "train_federated", fake_train)


def _build(banks: list[BankImages], tmp_path: Path, scope: str = "bank", fpr: float = 0.25) -> training.DetectorBuild:
    return build_detector(banks, settings=TrainSettings(rounds=1), dp=None, fpr=fpr, validation_fraction=0.5,
                          slicer=SLICER, store_path=tmp_path / "runs.db", work_dir=tmp_path / "work", seed=3,
                          threshold_scope=scope)  # type: ignore[arg-type]


def test_no_bank_moves_another_banks_threshold(tmp_path: Path, fixed_training: None) -> None:
    """The shared model is held fixed (in a real run bank B's TRAINING documents move the shared model, the one
    channel through which banks influence each other); bank B's validation documents must not move A's threshold."""
    a, b = _bank("bank_a", 1, 10.0), _bank("bank_b", 2, 10.0)
    changed_b = _bank("bank_b", 99, 40.0)  # bank B's documents (validation ones included) all replaced
    before, after = _build([a, b], tmp_path / "1"), _build([a, changed_b], tmp_path / "2")
    assert before.threshold_scope == "bank" and set(before.thresholds) == {"bank_a", "bank_b"}
    assert before.thresholds["bank_a"] == after.thresholds["bank_a"]          # A's operating point unchanged
    assert before.thresholds["bank_b"].threshold != after.thresholds["bank_b"].threshold  # B's moved with B's data
    assert before.validation["banks"]["bank_a"] == after.validation["banks"]["bank_a"]
    assert before.thresholds["bank_a"].n_real_validation == 4
    assert before.for_bank("bank_a").threshold == before.thresholds["bank_a"].threshold
    assert before.detector.threshold == min(p.threshold for p in before.thresholds.values())
    assert "nothing of any bank's validation" in before.provenance["threshold_note"]
    assert "validation" not in before.provenance and "threshold" not in before.provenance
    assert before.validation["pooled"]["auc"] is None  # no pooled score, so no pooled AUC
    # the control: the pooled (simulation) threshold DOES move with bank B's scores, and says it released them
    pooled, pooled_changed = _build([a, b], tmp_path / "3", "pooled"), _build([a, changed_b], tmp_path / "4", "pooled")
    assert pooled.thresholds == {} and pooled.detector.threshold != pooled_changed.detector.threshold
    assert "releases each validation document's score" in pooled.provenance["threshold_note"]


def test_a_bank_with_too_few_real_validation_images_is_named_before_training(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_train(*_: Any, **__: Any) -> None:
        raise AssertionError("training started although a bank cannot fix its threshold")

    monkeypatch.setattr(training, "train_federated", must_not_train)
    banks = [_bank("bank_a", 1, 10.0, n=12), _bank("small_bank", 2, 10.0, n=4)]
    with pytest.raises(BankDataError, match=r"needs at least 5 real validation images; 'small_bank' holds out 2"):
        _build(banks, tmp_path, fpr=0.2)
    assert not (tmp_path / "work").exists()


def test_a_scan_uses_the_scanning_banks_own_operating_point(tmp_path: Path, fixed_training: None) -> None:
    built = _build([_bank("bank_a", 1, 10.0), _bank("bank_b", 2, 25.0)], tmp_path)
    shared = detector_file(built, "synthetic")
    assert "threshold" not in shared and "thresholds" not in shared  # the model only
    with pytest.raises(ConfigError, match="shared model of a per-bank training"):
        Detector.from_dict(shared, "det.json")
    for bank in ("bank_a", "bank_b"):
        copy = bank_file(built, bank, "synthetic")
        assert set(copy["thresholds"]) == {bank} and set(copy["provenance"]["validation"]["banks"]) == {bank}
        assert copy["model_sha256"] == shared["model_sha256"]
        chosen, point = select_operating_point(Detector.from_dict(copy, "own.json"), copy, None, "own.json")
        assert chosen.threshold == built.thresholds[bank].threshold == point.threshold and point.bank == bank
        assert point.scope == "bank" and "own threshold" in point.describe()
    # a file written before the shared file dropped the operating points: several banks in one map
    legacy = {**shared, "threshold": built.detector.threshold, "provenance": {
        **shared["provenance"], "threshold": built.detector.threshold, "validation": built.validation},
        "thresholds": {b: {"threshold": p.threshold, "fpr": p.fpr, "n_real_validation": p.n_real_validation}
                       for b, p in built.thresholds.items()}}
    detector = Detector.from_dict(legacy, "det.json")
    with pytest.raises(ConfigError, match="bank_a, bank_b.*--bank"):
        select_operating_point(detector, legacy, None, "det.json")
    with pytest.raises(ConfigError, match="no operating point for bank 'bank_z'.*bank_a, bank_b"):
        select_operating_point(detector, legacy, "bank_z", "det.json")
    own = for_bank(legacy, "bank_b")  # the legacy file trimmed to bank B: nothing of bank A, no pooled figures
    assert set(own["thresholds"]) == {"bank_b"} and set(own["provenance"]["validation"]) == {"banks"}
    assert own["threshold"] == own["provenance"]["threshold"] == built.thresholds["bank_b"].threshold
    assert repr(built.thresholds["bank_a"].threshold) not in repr(own)
    broken = {**legacy, "thresholds": {"bank_a": {"threshold": "low", "fpr": 0.25, "n_real_validation": 4}}}
    with pytest.raises(ConfigError, match=r"'thresholds.bank_a'.threshold"):
        select_operating_point(detector, broken, "bank_a", "det.json")


def test_a_pooled_or_older_file_keeps_its_single_threshold(tmp_path: Path, fixed_training: None) -> None:
    built = _build([_bank("bank_a", 1, 10.0), _bank("bank_b", 2, 25.0)], tmp_path, "pooled")
    data = detector_file(built, "synthetic")
    assert data["threshold_scope"] == "pooled" and "thresholds" not in data
    detector = Detector.from_dict(data, "det.json")
    chosen, point = select_operating_point(detector, data, "bank_a", "det.json")
    assert chosen is detector and point.scope == "pooled" and "released" in point.describe()
    older = {k: v for k, v in data.items() if k != "threshold_scope"}
    assert select_operating_point(detector, older, None, "old.json")[1].scope == "pooled"
    with pytest.raises(ConfigError, match="'thresholds' belongs to threshold_scope 'bank'"):
        select_operating_point(detector, {**data, "thresholds": {}}, None, "det.json")


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return [float(value)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_a_reader_of_the_shared_file_finds_no_image_score_and_a_bank_copy_only_its_own(tmp_path: Path,
                                                                                        fixed_training: None) -> None:
    """The curious reader (another bank, the trainer) searches every number in the shared file for the score of any
    bank's document: none is there. A bank's own copy holds exactly one: its own threshold."""
    banks = [_bank("bank_a", 1, 10.0), _bank("bank_b", 2, 25.0)]
    built = _build(banks, tmp_path)
    draft = dataclasses.replace(built.detector, threshold=0.5)
    scores = {float(draft.aggregate(draft.patch_scores(image)[0])) for bank in banks for _, image, _ in bank.items}
    assert set(_numbers(detector_file(built, "synthetic"))) & scores == set()
    for bank in ("bank_a", "bank_b"):
        assert set(_numbers(bank_file(built, bank, "synthetic"))) & scores == {built.thresholds[bank].threshold}
