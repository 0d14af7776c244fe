"""Invisible keyed watermarks for AI-generated images (issue 19): a spread-spectrum mark in the 8x8-block DCT
mid-band of luma, seeded by HMAC(key, label, index), weighted by a perceptual (JND) mask, with a
Fourier-magnitude sync template so detection can undo rotation and scale; detection is a hypothesis test
whose p-value counts every search it makes (stats.py).

Modules: keys (32-byte secrets, 0600 JSON files), carriers (HMAC-seeded chips and sync peaks, the tile and
its linear decoder), jnd (perceptual mask), embed, sync (template and its rotation/scale estimate), lattice
(rotation/scale from the mark's own periodicity), detect, stats (p-values and thresholds).

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
