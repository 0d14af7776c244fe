"""Synthetic images for the slicer/fingerprint/detector tests: smooth noise ("pristine") and its forgeries.

Forgeries are what the fingerprint is meant to see: an image down-sampled and up-sampled again (nearest or
bilinear: the periodic trace of a generator's up-sampling layers), and an image JPEG-compressed twice with the
second grid shifted (a re-encoded, re-framed document). Seeds are fixed: the tests must be reproducible.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage


def pristine(rng: np.random.Generator, size: tuple[int, int] = (128, 128)) -> np.ndarray:
    """Smooth coloured noise with fine sensor-like grain, uint8 RGB."""
    h, w = size
    sigma = rng.uniform(1.0, 4.0)
    base = ndimage.gaussian_filter(rng.normal(128, 40, (h, w, 3)), (sigma, sigma, 0))
    base += rng.normal(0, rng.uniform(1.5, 4.0), (h, w, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def upsampled(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Down-sample by 2 and up-sample back with a nearest or bilinear kernel."""
    h, w = img.shape[:2]
    kernel = Image.Resampling.NEAREST if rng.random() < 0.5 else Image.Resampling.BILINEAR
    small = Image.fromarray(img).resize((w // 2, h // 2), Image.Resampling.BILINEAR)
    return np.asarray(small.resize((w, h), kernel))


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer).convert("RGB"))


def double_jpeg(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """JPEG twice, the second time on a grid shifted by 1-7 pixels (the image is rolled in between and back)."""
    shift = int(rng.integers(1, 8))
    once = np.roll(jpeg(img, int(rng.integers(50, 90))), (shift, shift), (0, 1))
    return np.roll(jpeg(once, int(rng.integers(60, 95))), (-shift, -shift), (0, 1))


def forged(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return upsampled(img, rng) if rng.random() < 0.5 else double_jpeg(img, rng)


def spliced(rng: np.random.Generator, size: tuple[int, int] = (192, 192)) -> tuple[np.ndarray, np.ndarray]:
    """A pristine image with a forged rectangle pasted in (on the 32-grid) and its mask."""
    img = pristine(rng, size)
    fake = upsampled(img, rng)
    mask = np.zeros(size, dtype=bool)
    mask[64:128, 64:160] = True
    out = img.copy()
    out[mask] = fake[mask]
    return out, mask
