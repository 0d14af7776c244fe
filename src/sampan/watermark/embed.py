"""Embedding: a periodic, JND-masked spread-spectrum tile in the 8x8 DCT mid-band of luma, plus sync peaks.

The tile (carriers.py) is repeated from the image's top-left corner; the same luma change is added to R, G
and B (so Y changes by exactly that and hue is kept). `strength` is the mark's RMS in grey levels before
rounding and clipping; the sync cosines add `SYNC_SHARE * strength` amplitude each. With the defaults the
PSNR is about 38.7 dB (39.1 on mostly white documents, where headroom clips the mark); `target_psnr`
instead scales the whole change to reach that PSNR (measured on the
returned uint8 image, after rounding and clipping).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sampan.watermark._image import check_image, luma
from sampan.watermark.carriers import TILE, carriers_for, chips_to_tile
from sampan.watermark.errors import WatermarkError
from sampan.watermark.jnd import jnd_mask
from sampan.watermark.keys import WatermarkKey
from sampan.watermark.sync import template

__all__ = ["embed", "mark_pattern", "DEFAULT_STRENGTH", "SYNC_SHARE", "psnr_uint8"]

DEFAULT_STRENGTH = 2.3
SYNC_SHARE = 0.4


def check_bits(bits: object, n_bits: int) -> np.ndarray:
    """`bits` as a 0/1 int array of length `n_bits`, or a WatermarkError naming the field."""
    try:
        arr = np.asarray(bits)
    except (TypeError, ValueError):
        raise WatermarkError("field 'bits' must be a sequence of 0/1 integers") from None
    if arr.ndim != 1 or len(arr) != n_bits:
        raise WatermarkError(f"field 'bits' must hold exactly n_bits={n_bits} values, got shape {arr.shape}")
    if arr.dtype.kind not in "biu" or not np.isin(arr, (0, 1)).all():
        raise WatermarkError("field 'bits' must contain only the integers 0 and 1")
    return arr.astype(np.int64)


def mark_pattern(shape: tuple[int, int], key: WatermarkKey, bits: np.ndarray) -> np.ndarray:
    """The unmasked spread-spectrum mark over an image of `shape`, RMS 1 (the tile repeated from (0, 0))."""
    carriers = carriers_for(key, len(bits))
    tile = chips_to_tile(carriers.chips(bits))
    tile /= float(np.sqrt(np.mean(tile * tile)))
    reps = (-(-shape[0] // TILE), -(-shape[1] // TILE))
    return np.tile(tile, reps)[: shape[0], : shape[1]]


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images (inf when equal)."""
    mse = float(np.mean((a.astype(float) - b.astype(float)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0 ** 2 / mse))


def _apply(image: np.ndarray, delta: np.ndarray) -> np.ndarray:
    change = delta if image.ndim == 2 else delta[:, :, None]
    return np.clip(np.rint(image.astype(float) + change), 0, 255).astype(np.uint8)


def embed(image: np.ndarray, key: WatermarkKey, bits: Sequence[int], *, n_bits: int = 32,
          strength: float = DEFAULT_STRENGTH, target_psnr: float | None = None) -> np.ndarray:
    """Return a uint8 copy of `image` carrying `bits` under `key` (same shape)."""
    image = check_image(image)
    if not isinstance(key, WatermarkKey):
        raise WatermarkError(f"field 'key' must be a WatermarkKey, got {type(key).__name__}")
    payload = check_bits(bits, n_bits)
    if not (isinstance(strength, (int, float)) and 0.0 < float(strength) <= 50.0):
        raise WatermarkError(f"field 'strength' must be a number in (0, 50], got {strength!r}")
    if target_psnr is not None and not (isinstance(target_psnr, (int, float)) and 20.0 <= target_psnr <= 60.0):
        raise WatermarkError(f"field 'target_psnr' must be a number in [20, 60], got {target_psnr!r}")
    y = luma(image)
    shape = (y.shape[0], y.shape[1])
    unit = jnd_mask(y) * mark_pattern(shape, key, payload) + template(shape, key, SYNC_SHARE)
    scale = float(strength)
    out = _apply(image, scale * unit)
    if target_psnr is not None:
        for _ in range(4):  # rounding and clipping make PSNR not exactly quadratic in the scale
            current = psnr_uint8(image, out)
            if abs(current - target_psnr) < 0.05:
                break
            scale *= 10.0 ** ((current - target_psnr) / 20.0)
            out = _apply(image, scale * unit)
    return out
