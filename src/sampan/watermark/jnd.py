"""A perceptual (JND) mask for the luma channel: where a change of a few grey levels stays invisible.

Two classic maskings (Watson / Chou-Li style, simplified): texture masking (busy regions hide more, grows
with the local standard deviation) and luminance masking (very dark and very bright regions hide more);
times a headroom factor so the mark is not clipped away at 0 and 255. The mask is normalised to a mean
square of 1, so `strength` in embed.py is the RMS of the mark in grey levels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["jnd_mask"]


def jnd_mask(luma: np.ndarray, *, sigma: float = 2.0) -> np.ndarray:
    """Per-pixel relative amplitude (mean square 1) for a mark on `luma` (float, 0..255)."""
    y = np.asarray(luma, dtype=float)
    mean = ndimage.gaussian_filter(y, sigma)
    var = np.maximum(ndimage.gaussian_filter(y * y, sigma) - mean * mean, 0.0)
    texture = (np.sqrt(var) + 3.0) ** 0.6
    luminance = 1.0 + 0.7 * ((mean - 128.0) / 128.0) ** 2
    headroom = np.clip(np.minimum(mean, 255.0 - mean) / 12.0, 0.1, 1.0)
    mask = texture * luminance * headroom
    mask = ndimage.gaussian_filter(mask, 1.0)  # no sharp steps in the mark's envelope
    rms = float(np.sqrt(np.mean(mask * mask))) or 1.0
    mask = np.clip(mask / rms, 0.15, 3.0)
    return mask / float(np.sqrt(np.mean(mask * mask)))
