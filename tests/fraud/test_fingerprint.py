"""Patch fingerprints: shape and order, finite on degenerate patches, batch-independent, and they react to the
traces they are for (JPEG grid, re-sampling) on synthetic images (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest
from _f2_synthetic import double_jpeg, jpeg, pristine, upsampled

from sampan.fraud import fingerprint
from sampan.fraud.fingerprint import (
    FEATURE_NAMES,
    PATCH_FEATURE_NAMES,
    half_resolution,
    image_features,
    image_residual,
    patch_features,
)
from sampan.fraud.slicer import cut, slice_image, to_gray


def _column(name: str) -> int:
    return FEATURE_NAMES.index(name)


def test_names_match_the_columns_and_are_unique() -> None:
    features, boxes = image_features(pristine(np.random.default_rng(0)))
    assert features.shape == (16, len(FEATURE_NAMES)) and boxes.shape == (16, 4)
    assert features.dtype == np.float64 and len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


@pytest.mark.parametrize("value", [0, 255, 128])
def test_flat_and_saturated_patches_give_finite_features(value: int) -> None:
    image = np.full((64, 64, 3), value, dtype=np.uint8)
    features, _ = image_features(image, flat_std_min=0.0)
    assert features.shape == (4, len(FEATURE_NAMES)) and np.isfinite(features).all()


def test_extreme_patches_give_finite_features() -> None:
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)  # maximal high frequency
    clipped = np.zeros((64, 64), dtype=np.uint8)
    clipped[:, 31:] = 255  # one hard edge, the rest saturated
    one_pixel = np.zeros((64, 64), dtype=np.uint8)
    one_pixel[10, 10] = 255
    for gray in (checker, clipped, one_pixel):
        features, _ = image_features(np.repeat(gray[..., None], 3, axis=2), flat_std_min=0.0)
        assert np.isfinite(features).all()
    assert patch_features(np.empty((0, 32, 32)), np.empty((0, 4))).shape == (0, len(FEATURE_NAMES))
    features, boxes = image_features(np.full((64, 64, 3), 255, dtype=np.uint8))  # all flat: nothing, no warning
    assert features.shape == (0, len(FEATURE_NAMES)) and boxes.shape == (0, 4)


def test_features_do_not_depend_on_the_batch() -> None:
    """Vectorised over patches: a patch's row is the same alone or among others (mixed grid phases too)."""
    gray = to_gray(pristine(np.random.default_rng(1), (96, 96)))
    sliced = slice_image(gray, size=32, stride=12)
    residuals = cut(image_residual(gray), sliced.boxes, 32)
    batch = patch_features(sliced.patches, sliced.boxes, residuals)
    own = len(FEATURE_NAMES) // 2
    for i in (0, 5, len(sliced) - 1):
        alone = patch_features(sliced.patches[i:i + 1], sliced.boxes[i:i + 1], residuals[i:i + 1])
        np.testing.assert_allclose(alone[0, :own], batch[i, :own], rtol=1e-5, atol=1e-6)
        assert not alone[0, own:].any()  # alone, a patch is its own image's median
    np.testing.assert_allclose(batch[:, own:], batch[:, :own] - np.median(batch[:, :own], axis=0))


def test_whole_image_residual_is_used_by_image_features() -> None:
    image = pristine(np.random.default_rng(2))
    features, boxes = image_features(image)
    gray = to_gray(image)
    sliced = slice_image(gray)
    np.testing.assert_array_equal(boxes, sliced.boxes)
    own = patch_features(sliced.patches, sliced.boxes)  # each patch's own residual: borders differ
    coarse = cut(image_residual(half_resolution(gray)), boxes // 2, 16)
    whole = patch_features(sliced.patches, sliced.boxes, cut(image_residual(gray), boxes, 32), coarse)
    np.testing.assert_allclose(features, whole)
    assert not np.allclose(own, whole)
    assert FEATURE_NAMES[len(PATCH_FEATURE_NAMES)] == "coarse_res_log_std" and FEATURE_NAMES[-1].endswith("_vs_image")
    np.testing.assert_allclose(half_resolution(sliced.patches), cut(half_resolution(gray), boxes // 2, 16))


def test_jpeg_grid_alignment_sees_the_absolute_grid() -> None:
    """A JPEG image's blocks jump at the absolute 8-grid; cropped by 3 pixels the jump moves to another phase."""
    rng = np.random.default_rng(3)
    image = pristine(rng)
    aligned = _column("jpeg_grid_aligned")
    shifted = _column("jpeg_grid_shifted")
    plain = image_features(image)[0]
    compressed = image_features(jpeg(image, 40))[0]
    assert compressed[:, aligned].mean() > plain[:, aligned].mean() + 0.2
    cropped = image_features(jpeg(image, 40)[3:, 3:])[0]  # the grid now sits at phase 5, not at the boundary
    assert cropped[:, shifted].mean() > cropped[:, aligned].mean() + 0.2
    assert compressed[:, _column("dct_zero_share")].mean() > plain[:, _column("dct_zero_share")].mean()


def test_resampling_and_recompression_move_the_residual_spectrum() -> None:
    rng = np.random.default_rng(4)
    image = pristine(rng)
    high = _column("spectrum_high_mid_ratio")
    base = image_features(image)[0][:, high].mean()
    assert image_features(upsampled(image, rng))[0][:, high].mean() < base - 1.0
    assert image_features(double_jpeg(image, rng))[0][:, high].mean() < base - 0.5


def test_chunked_extraction_equals_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """image_features fingerprints a bounded number of patches at a time; the result does not depend on it."""
    image = pristine(np.random.default_rng(5), (96, 112))
    image[:40, :40] = 255  # some flat patches, dropped inside the chunks
    whole, boxes = image_features(image, stride=8)
    monkeypatch.setattr(fingerprint, "CHUNK_PATCHES", 7)
    chunked, chunk_boxes = image_features(image, stride=8)
    np.testing.assert_array_equal(boxes, chunk_boxes)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-5)  # float32 sums: last-digit differences
    sliced = slice_image(to_gray(image), stride=8)
    np.testing.assert_array_equal(sliced.boxes, boxes)
