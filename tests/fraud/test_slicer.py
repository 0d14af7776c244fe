"""The slicer: grid positions, content, flat-patch drop and clear errors (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest

from sampan.errors import ConfigError, DataError
from sampan.fraud.slicer import SlicerConfig, cut, slice_image, to_gray


def _textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (h, w)).astype(np.float32)


def test_grid_boxes_and_content_match_the_image() -> None:
    gray = _textured(70, 100)
    sliced = slice_image(gray, size=32, stride=32)
    assert sliced.patches.shape == (2 * 3, 32, 32) and sliced.patches.dtype == np.float32
    assert sliced.boxes.tolist()[:3] == [[0, 0, 32, 32], [0, 32, 32, 64], [0, 64, 32, 96]]
    for patch, (y0, x0, y1, x1) in zip(sliced.patches, sliced.boxes, strict=True):
        np.testing.assert_array_equal(patch, gray[y0:y1, x0:x1])


def test_overlapping_stride_counts_every_position() -> None:
    sliced = slice_image(_textured(64, 64), size=32, stride=16)
    assert len(sliced) == 9
    assert sorted({int(b[0]) for b in sliced.boxes}) == [0, 16, 32]


def test_flat_patches_are_dropped() -> None:
    gray = _textured(64, 64)
    gray[:32, :32] = 200.0  # blank paper
    gray[32:, 32:] = 255.0  # saturated highlight
    gray[:32, 32:] = 100.0 + np.random.default_rng(1).normal(0, 1.0, (32, 32))  # below the 2.0 floor
    sliced = slice_image(gray, size=32, stride=32, flat_std_min=2.0)
    assert sliced.boxes.tolist() == [[32, 0, 64, 32]]
    assert len(slice_image(gray, size=32, stride=32, flat_std_min=0.0)) == 4


def test_image_smaller_than_a_patch_is_a_clear_error() -> None:
    with pytest.raises(DataError, match=r"20x50 pixels is smaller than one 32x32 patch"):
        slice_image(_textured(20, 50), size=32)


@pytest.mark.parametrize("settings", [{"size": 4}, {"stride": 0}, {"flat_std_min": -1.0}, {"size": 32.5},
                                      {"flat_std_min": "2"}, {"flat_std_min": float("nan")}, {"stride": True}])
def test_bad_settings_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        SlicerConfig(**settings)  # type: ignore[arg-type]


def test_gray_conversion_and_cut() -> None:
    rgb = np.zeros((40, 40, 3), dtype=np.uint8)
    rgb[..., 0] = 100
    assert np.allclose(to_gray(rgb), 29.9, atol=1e-4)
    with pytest.raises(DataError, match="shape"):
        to_gray(np.zeros((4, 4, 2)))
    boxes = np.array([[8, 8, 24, 24]])
    plane = _textured(40, 40)
    np.testing.assert_array_equal(cut(plane, boxes, 16)[0], plane[8:24, 8:24])
    assert cut(plane, np.empty((0, 4), dtype=np.int64), 16).shape == (0, 16, 16)
