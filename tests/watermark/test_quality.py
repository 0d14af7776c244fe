"""PSNR and SSIM (sampan.watermark.quality): the definitions the benchmark reports, checked on known cases.

The SSIM is also checked against scikit-image's structural_similarity in the benchmark venv (see
bench/watermark_robustness.py --check-ssim); here against closed forms and properties, with no extra dependency."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sampan.watermark.quality import ImageMismatchError, luma, psnr, ssim


def _image(seed: int = 0, shape: tuple[int, ...] = (64, 64, 3)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, shape[0] * shape[1]).reshape(shape[:2])
    if len(shape) == 3:
        base = np.repeat(base[:, :, None], shape[2], axis=2)
    return np.clip(base + rng.normal(0, 20, size=shape), 0, 255).astype(np.uint8)


def test_psnr_of_a_known_mse() -> None:
    a = np.full((32, 32, 3), 100, np.uint8)
    b = a.copy()
    b[::2] += 10  # half the pixels off by 10: MSE 50
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 50))
    assert psnr(a, a) == math.inf


def test_ssim_identity_and_symmetry() -> None:
    a, b = _image(0), _image(1)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, b) == pytest.approx(ssim(b, a))
    assert ssim(a, b) < 0.9


def test_ssim_of_constant_images_follows_the_luminance_term() -> None:
    # Flat images: variances and covariance are 0, so SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1).
    a = np.full((32, 32), 100, np.uint8)
    b = np.full((32, 32), 120, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 120 + c1) / (100**2 + 120**2 + c1))


def test_ssim_falls_with_noise_and_is_on_luma() -> None:
    a = _image(2)
    rng = np.random.default_rng(3)
    small = np.clip(a + rng.normal(0, 2, a.shape), 0, 255).astype(np.uint8)
    large = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert 1.0 > ssim(a, small) > ssim(a, large)
    # A change that keeps the luma (a chroma swap with equal weights is impossible; use gray vs its RGB copy).
    g = _image(4, (64, 64))
    rgb = np.repeat(g[:, :, None], 3, axis=2)
    assert np.allclose(luma(rgb), g, atol=1e-9)
    assert ssim(rgb, rgb) == pytest.approx(ssim(g, g))


def test_mismatched_or_tiny_images_are_refused() -> None:
    with pytest.raises(ImageMismatchError, match="shape"):
        psnr(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8))
    with pytest.raises(ImageMismatchError, match="window"):
        ssim(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8))
    with pytest.raises(ImageMismatchError, match="expected"):
        psnr(np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 4), np.uint8))
