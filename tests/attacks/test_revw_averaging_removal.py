"""REVW-2 (documented limit, not fixed): averaging a few same-key, same-payload images removes the mark, no key.

A bank marks its images with one key and, typically, one payload. The mean of four marked images' folded
residuals, projected on the public 8x8-DCT mid-band and reduced to signs, is the tile; scaled by the public JND
mask and the default strength and subtracted from a fifth marked image, it leaves an image closer to the
unmarked original that detect() no longer reports as marked. This test asserts the attack WORKS and that the
package docs say so; a fix (content-dependent or per-tile key-varied pattern) should flip it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "review"))
from _revw_wm import KEY, TILE, folded_residual, luma, natural, psnr  # type: ignore[import-not-found]  # noqa: E402

import sampan.watermark  # noqa: E402
from sampan.watermark import detect, embed  # noqa: E402
from sampan.watermark.carriers import N_CHIPS, chips_to_tile, tile_to_chips  # noqa: E402
from sampan.watermark.embed import DEFAULT_STRENGTH  # noqa: E402
from sampan.watermark.jnd import jnd_mask  # noqa: E402


@pytest.mark.slow
def test_subtracting_the_average_of_four_marked_images_removes_the_mark() -> None:
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
    assert not detect(cleaned, KEY).marked_at(1e-3)  # the attack works: the limit is real


def test_docs_state_that_a_few_marked_images_let_anyone_remove_the_mark() -> None:
    doc = " ".join((sampan.watermark.__doc__ or "").split())
    assert "the mean of 4 images marked with the same key and payload" in doc
    assert "absence of the mark proves nothing" in doc
