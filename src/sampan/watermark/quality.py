"""Image quality of a marked (or attacked) image against its original: PSNR and SSIM.

Why here: the watermark's claim is "invisible at PSNR >= 38 dB", and the benchmark compares methods at their own
PSNR/SSIM, so both metrics must be defined once and checked against a reference implementation.

- `psnr(a, b)`: 10 log10(255^2 / MSE) over every pixel and channel (uint8 range); infinite for identical images.
- `ssim(a, b)`: Wang, Bovik, Sheikh & Simoncelli (IEEE TIP 2004) on luma (BT.601 Y of an RGB image, the gray image
  itself otherwise), Gaussian window sigma 1.5 truncated at radius 5 (11 x 11), K1 = 0.01, K2 = 0.03, L = 255,
  population (not sample) covariances; the local SSIM map is averaged away from a 5-pixel border (as
  scikit-image's `structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255)` does; bench/watermark_robustness.py checks the two agree).
"""

from __future__ import annotations

import math

import numpy as np

from sampan.watermark.errors import WatermarkError

__all__ = ["ImageMismatchError", "luma", "psnr", "ssim"]

_SIGMA = 1.5
_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5 -> the 11 x 11 window of Wang et al.
_RADIUS = 5
_K1, _K2, _L = 0.01, 0.03, 255.0


class ImageMismatchError(WatermarkError):
    """Two images that cannot be compared pixel by pixel (shape or layout differs)."""


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ImageMismatchError(f"images differ in shape: {a.shape} vs {b.shape} (compare at the same size)")
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3)):
        raise ImageMismatchError(f"image shape {a.shape}: expected HxW gray or HxWx3 RGB")
    return a.astype(np.float64), b.astype(np.float64)


def luma(image: np.ndarray) -> np.ndarray:
    """BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B as float64 (not rounded); a gray image as float64."""
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 3 and x.shape[2] == 3:
        return np.asarray(x @ np.array([0.299, 0.587, 0.114]))
    if x.ndim == 3 and x.shape[2] == 1:
        return x[:, :, 0]
    if x.ndim == 2:
        return x
    raise ImageMismatchError(f"image shape {x.shape}: expected HxW gray or HxWx3 RGB")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels (inf when the images are identical)."""
    x, y = _check_pair(a, b)
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(_L * _L / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity on luma (Wang et al. 2004, Gaussian 11 x 11 window, sigma 1.5)."""
    from scipy.ndimage import gaussian_filter

    _check_pair(a, b)
    x, y = luma(a), luma(b)
    if min(x.shape) < 2 * _RADIUS + 1:
        raise ImageMismatchError(f"image {x.shape} is smaller than SSIM's 11 x 11 window")

    def blur(z: np.ndarray) -> np.ndarray:
        return np.asarray(gaussian_filter(z, sigma=_SIGMA, truncate=_TRUNCATE, mode="reflect"))

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1, c2 = (_K1 * _L) ** 2, (_K2 * _L) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s[_RADIUS:-_RADIUS, _RADIUS:-_RADIUS].mean())
