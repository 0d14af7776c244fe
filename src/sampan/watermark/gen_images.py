"""Procedural grey images for the generator reproduction (sampan.watermark.generator): made by NumPy here,
nothing downloaded, so their provenance is this file.

Each image is a random smooth gradient, a few soft-edged ellipses and rectangles, and a fractal (1/f) noise
texture of random strength: enough structure for a denoiser to have something to keep."""

from __future__ import annotations

import numpy as np

from sampan.watermark.errors import WatermarkError

__all__ = ["procedural_gray", "add_noise"]


def _fractal(rng: np.random.Generator, side: int) -> np.ndarray:
    fy, fx = np.fft.fftfreq(side)[:, None], np.fft.fftfreq(side)[None, :]
    spectrum = np.fft.fft2(rng.normal(size=(side, side))) / (np.hypot(fy, fx) + 2.0 / side)
    x = np.real(np.fft.ifft2(spectrum))
    return (x - x.mean()) / (x.std() + 1e-9)


def procedural_gray(n: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """`n` float grey images (n, side, side) in 0..255."""
    if n < 1 or side < 8:
        raise WatermarkError(f"fields 'n' and 'side' must be >= 1 and >= 8, got {n} and {side}")
    yy, xx = np.mgrid[0:side, 0:side] / side
    out = np.empty((n, side, side))
    for i in range(n):
        a, b = rng.uniform(-70, 70, 2)
        img = rng.uniform(90, 170) + a * (yy - 0.5) + b * (xx - 0.5)
        for _ in range(int(rng.integers(2, 6))):
            cy, cx = rng.uniform(0, 1, 2)
            ry, rx = rng.uniform(0.05, 0.3, 2)
            level = rng.uniform(-70, 70)
            if rng.random() < 0.5:
                inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
            else:
                inside = np.maximum(np.abs(yy - cy) / ry, np.abs(xx - cx) / rx) ** 2
            img += level / (1.0 + np.exp(np.minimum(12.0 * (inside - 1.0), 50.0)))  # soft edge
        img += rng.uniform(3, 15) * _fractal(rng, side)
        out[i] = np.clip(img, 0, 255)
    return out


def add_noise(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Images plus white Gaussian noise of `sigma` grey levels, clipped to 0..255 (the denoising input)."""
    return np.clip(images + rng.normal(0.0, sigma, images.shape), 0, 255)
