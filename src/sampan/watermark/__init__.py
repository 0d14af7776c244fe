"""Invisible keyed watermarks for AI-generated images (issue 19): a spread-spectrum mark in the 8x8-block DCT
mid-band of luma, seeded by HMAC(key, label, index), weighted by a perceptual (JND) mask, with a
Fourier-magnitude sync template so detection can undo rotation and scale; detection is a hypothesis test
whose p-value counts every search it makes (stats.py).

Robust to: JPEG, rotation (any angle), UNIFORM scale 0.5x..2x, translation, crop, mirror flips (horizontal,
vertical, transpose). Uniform scale only: an aspect-ratio change or shear (e.g. the width alone resized by
10 %) is not modelled and removes the mark.

What a detection proves, and what it does not (review REVW-1/2/5; tests/attacks/test_revw_*.py). The mark
is a FIXED additive pattern: one 128 x 128 tile, the same in every image a key marks (its pilot part is
payload-independent), repeated over the image. Anyone holding a few marked images, WITHOUT the key, can:
- copy it (forge): averaging one marked image's high-pass residual over its tile windows estimates the
  tile; added to an unrelated image (about 39 dB PSNR from 1 image; 40.8 dB and z about 18 from 2) it makes
  `detect` report the key's mark, with the source's payload;
- remove it: the mean of 4 images marked with the same key and payload estimates the tile; subtracting it
  (scaled by the public JND mask) from a fifth leaves an unmarked-looking image (p = 1) that is closer to
  the original than the marked one was;
- notch it: the tile's period puts the whole mark on the 1/128 frequency grid (the residual's
  autocorrelation shows the period to anyone); replacing those bins above 0.1 cycles/px by their
  neighbours' mean removes it, at a cost of about 27-31 dB PSNR on busy images but about 40 dB on smooth
  ones.
So a detection means "this image carries a copy of this key's pattern", not "the key holder made this
image", and absence of the mark proves nothing. What would fix it (not done): a content-dependent pattern
(the key plus a robust perceptual hash of the image seeds the tile, so a copied pattern does not match the
target) or a payload signed and bound to the content, and per-tile key-varied patterns (key-derived
permutations/sign flips of the chips per tile, undone by the detector with the key) so the mark is not
strictly periodic. Meanwhile: vary the payload per image and rotate keys.

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
