"""Detection survives the goal attacks (JPEG 50, rotation 15 degrees with rescale, crop, translation) with
p-values far below 1e-6, recovers the geometry, and gives nothing to a wrong key or an unmarked image."""

from __future__ import annotations

import numpy as np
import pytest
from _wm_test_images import jpeg, make_image, rotate_rescale, translate

from sampan.watermark import WatermarkKey, detect, embed, threshold_for


def _key(seed: int) -> WatermarkKey:
    """A fixed test key (reproducible tests); real keys come from generate_key()."""
    return WatermarkKey(np.random.default_rng([seed, 19]).bytes(32), f"test-{seed}")


def _bits(seed: int) -> list[int]:
    return [int(b) for b in np.random.default_rng([seed, 32]).integers(0, 2, 32)]


def _marked(kind: str, seed: int) -> tuple[np.ndarray, WatermarkKey, list[int]]:
    key, bits = _key(seed), _bits(seed)
    return embed(make_image(kind, seed), key, bits), key, bits


def _accuracy(found: list[int], bits: list[int]) -> float:
    return float(np.mean(np.array(found) == np.array(bits)))


@pytest.mark.parametrize("kind", ["natural", "texture", "strokes", "document"])
def test_survives_jpeg_50(kind: str) -> None:
    marked, key, bits = _marked(kind, 1)
    found = detect(jpeg(marked, 50), key)
    assert found.marked_at(1e-6) and found.p_value < 1e-12
    assert _accuracy(found.bits, bits) >= 0.95


@pytest.mark.parametrize(("kind", "degrees", "scale"), [
    ("natural", 15, 0.8), ("natural", -15, 1.2), ("texture", 15, 0.8), ("strokes", -15, 0.8), ("document", 15, 1.2),
])
def test_survives_rotation_with_rescale(kind: str, degrees: float, scale: float) -> None:
    marked, key, bits = _marked(kind, 2)
    found = detect(rotate_rescale(marked, degrees, scale), key)
    assert found.marked_at(1e-6)
    assert _accuracy(found.bits, bits) >= 0.95
    assert found.rotation_deg == pytest.approx(degrees, abs=0.5)
    assert found.scale == pytest.approx(scale, rel=0.01)


@pytest.mark.parametrize("kind", ["natural", "strokes"])
def test_survives_crop_and_translation(kind: str) -> None:
    marked, key, bits = _marked(kind, 3)
    side = int(round(512 / np.sqrt(2)))  # keeps 50% of the area
    for attacked in (marked[70:70 + side, 100:100 + side], translate(marked, 37, -51)):
        found = detect(np.ascontiguousarray(attacked), key)
        assert found.marked_at(1e-6)
        assert found.bits == bits


def test_jpeg_and_rotation_together() -> None:
    marked, key, bits = _marked("natural", 4)
    found = detect(jpeg(rotate_rescale(marked, 15, 0.8), 50), key)
    assert found.marked_at(1e-6)
    assert _accuracy(found.bits, bits) >= 0.9


def test_wrong_key_and_unmarked_image_are_not_detected() -> None:
    marked, key, _ = _marked("natural", 5)
    image = make_image("natural", 5)
    for found in (detect(marked, _key(99)), detect(image, key), detect(rotate_rescale(marked, 15, 0.8), _key(98))):
        assert not found.marked_at(1e-3)
        assert found.p_value >= 1e-3
        assert found.statistic < threshold_for(1e-3)


def test_decision_agrees_with_the_threshold() -> None:
    marked, key, _ = _marked("texture", 6)
    for image in (marked, make_image("texture", 6)):
        found = detect(image, key)
        for fpr in (1e-3, 1e-6):
            assert found.marked_at(fpr) == (found.statistic >= threshold_for(fpr) - 1e-9)


def test_notes_say_what_was_searched() -> None:
    marked, key, _ = _marked("smooth", 7)
    found = detect(rotate_rescale(marked, 30, 1.0), key)
    assert found.marked_at(1e-6)
    assert any("Bonferroni" in note for note in found.notes)
    assert found.rotation_deg == pytest.approx(30, abs=0.5)


def test_flat_image_is_noted_as_carrying_no_mark() -> None:
    found = detect(np.full((256, 256, 3), 128, dtype=np.uint8), WatermarkKey(bytes(32), "flat"))
    assert not found.marked_at(1e-3)
    assert any("no texture to carry a mark" in note for note in found.notes)


def test_bit_confidences_are_documented_as_strengths_not_probabilities() -> None:
    from sampan.watermark import Detection

    doc = " ".join((Detection.__doc__ or "").split())
    assert "Phi(|z_i|)" in doc and "not a posterior probability" in doc
    assert "meaningless" in doc  # bits of an image that is not marked
