"""REVW-2: averaging a few images marked with the same key and payload reveals the mark; subtracting it removes it.

A bank marks its images with one key and, typically, one payload (its id). The mark is a fixed periodic tile, so
the mean of four marked images' folded residuals, projected on the public 8x8-DCT mid-band and reduced to signs,
is the tile; scaled by the published JND mask (computed from the marked image itself) and the default strength,
and subtracted from a fifth marked image, it leaves an image closer to the unmarked original (about 41.5 dB) that
detect() no longer reports as marked (z about 4.3, p = 1). With random payloads, 16 images bring z down to
4.6-18. No key is used. Secure outcome asserted: the mark is still detected at FPR 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
from _revw_wm import KEY, TILE, folded_residual, luma, natural, psnr

from sampan.watermark import detect, embed
from sampan.watermark.carriers import N_CHIPS, chips_to_tile, tile_to_chips
from sampan.watermark.embed import DEFAULT_STRENGTH
from sampan.watermark.jnd import jnd_mask


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="REVW-2: averaging 4 same-payload marked images removes the mark, no key")
def test_mark_survives_subtraction_of_its_average_estimate() -> None:
    payload = list(np.random.default_rng(7).integers(0, 2, 32))
    seen = [embed(natural(700 + i), KEY, payload) for i in range(4)]
    chips = np.mean([(c := tile_to_chips(folded_residual(m))) / c.std() for m in seen], axis=0)
    unit_norm = float(np.sqrt(np.mean(chips_to_tile(np.ones(N_CHIPS)) ** 2)))
    pattern = chips_to_tile(np.sign(chips)) / unit_norm
    original = natural(800)
    marked = embed(original, KEY, payload)
    assert detect(marked, KEY).marked_at(1e-6)
    h, w = marked.shape[:2]
    estimate = DEFAULT_STRENGTH * jnd_mask(luma(marked)) * np.tile(pattern, (h // TILE, w // TILE))
    cleaned = np.clip(np.rint(marked.astype(float) - estimate[:, :, None]), 0, 255).astype(np.uint8)
    assert psnr(original, cleaned) > psnr(original, marked)  # closer to the original than the marked image
    assert detect(cleaned, KEY).marked_at(1e-6)
