"""Invisible keyed watermarks for AI-generated images (issue 19): a spread-spectrum mark in the 8x8-block DCT
mid-band of luma, seeded by HMAC(key, label, index), weighted by a perceptual (JND) mask, with a
Fourier-magnitude sync template so detection can undo rotation and scale; detection is a hypothesis test
whose p-value counts every search it makes (stats.py).

May import: sampan.errors, sampan.files (and numpy, scipy; Pillow inside functions only).
"""

from sampan.watermark.carriers import MAX_BITS, TILE
from sampan.watermark.detect import Detection, detect
from sampan.watermark.embed import DEFAULT_STRENGTH, embed
from sampan.watermark.errors import WatermarkError, WatermarkKeyError
from sampan.watermark.keys import WatermarkKey, generate_key, load_key, save_key
from sampan.watermark.stats import threshold_for

__all__ = [
    "DEFAULT_STRENGTH", "MAX_BITS", "TILE", "Detection", "WatermarkError", "WatermarkKey", "WatermarkKeyError",
    "detect", "embed", "generate_key", "load_key", "save_key", "threshold_for",
]
