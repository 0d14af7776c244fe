"""Shared pieces of the REVW watermark review repros (issue 19): a fixed key, procedural test images made here
(no downloaded data; provenance is this file), and the key-free estimate an attacker can make of the periodic mark.

The attacker's tools use only public image processing (a Gaussian high-pass and the 128-pixel fold, the same
numbers anyone reading docs or the image's autocorrelation learns); nothing here touches the key."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from sampan.watermark import WatermarkKey

TILE = 128  # the mark's period, public (the residual's autocorrelation shows it without a key)
KEY = WatermarkKey(bytes(range(32)), "revw-fixed")  # fixed so the repros are deterministic


def natural(seed: int, n: int = 512) -> np.ndarray:
    """Coloured 1/f noise, like photo statistics (uint8 n x n x 3)."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :]
    base = rng.normal(size=(n, n))
    out = np.zeros((n, n, 3))
    for c in range(3):
        noise = 0.7 * base + 0.3 * rng.normal(size=(n, n))
        x = np.real(np.fft.ifft2(np.fft.fft2(noise) / (np.hypot(fy, fx) + 1.0 / n)))
        out[..., c] = 128 + 45 * (x - x.mean()) / x.std()
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def luma(image: np.ndarray) -> np.ndarray:
    """BT.601 luma as float."""
    return image.astype(float) @ np.array([0.299, 0.587, 0.114])


def folded_residual(image: np.ndarray) -> np.ndarray:
    """The mean of the high-pass residual over all whole TILE x TILE windows from (0, 0): no key needed."""
    y = luma(image)
    r = y - ndimage.gaussian_filter(y, 1.0)
    h, w = (r.shape[0] // TILE) * TILE, (r.shape[1] // TILE) * TILE
    return r[:h, :w].reshape(h // TILE, TILE, w // TILE, TILE).mean(axis=(0, 2))


def add_tiled(image: np.ndarray, tile: np.ndarray, amplitude: float) -> np.ndarray:
    """`image` plus `amplitude` x `tile` repeated from (0, 0) on every channel, rounded and clipped."""
    h, w = image.shape[:2]
    delta = amplitude * np.tile(tile, (-(-h // TILE), -(-w // TILE)))[:h, :w]
    return np.clip(np.rint(image.astype(float) + delta[:, :, None]), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images."""
    mse = float(np.mean((a.astype(float) - b.astype(float)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0 ** 2 / mse))
