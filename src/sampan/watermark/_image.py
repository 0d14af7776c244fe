"""Shared image checks and the luma (Y) channel: the mark lives in Y, added equally to R, G and B."""

from __future__ import annotations

import numpy as np

from sampan.watermark.carriers import TILE
from sampan.watermark.errors import WatermarkError

__all__ = ["check_image", "luma", "MIN_SIDE", "MAX_SIDE"]

MIN_SIDE = TILE
MAX_SIDE = 8192
_Y = np.array([0.299, 0.587, 0.114])


def check_image(image: object, field: str = "image") -> np.ndarray:
    """`image` as uint8 HxW or HxWx3, or a WatermarkError naming `field`."""
    if not isinstance(image, np.ndarray):
        raise WatermarkError(f"field {field!r} must be a NumPy uint8 array (HxW or HxWx3), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise WatermarkError(f"field {field!r} must have dtype uint8, got {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise WatermarkError(f"field {field!r} must be HxW (grey) or HxWx3 (RGB), got shape {image.shape}")
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE or max(height, width) > MAX_SIDE:
        raise WatermarkError(f"field {field!r} must be between {MIN_SIDE} and {MAX_SIDE} pixels a side, "
                             f"got {height}x{width}")
    return image


def luma(image: np.ndarray) -> np.ndarray:
    """Y (BT.601) as float64 in 0..255."""
    if image.ndim == 2:
        return image.astype(float)
    return image.astype(float) @ _Y
