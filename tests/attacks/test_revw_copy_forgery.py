"""REVW-1 (documented limit, not fixed): the mark can be copied onto any image from marked images, no key.

The mark is a fixed 128 x 128 tile repeated over the image, and its pilot (what detection tests) is the same
in every image the key marks. Averaging two marked images' high-pass residuals over their tile windows
estimates it; added, tiled, to an unrelated unmarked image (PSNR above 40 dB) it makes detect() report the
key's mark at FPR 1e-6. This test asserts the attack WORKS and that the package and key docs say so: a future
fix (content-dependent pattern) should flip it, and then the docs and this test change together.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "review"))
from _revw_wm import KEY, add_tiled, folded_residual, natural, psnr  # type: ignore[import-not-found]  # noqa: E402

import sampan.watermark  # noqa: E402
from sampan.watermark import detect, embed, keys  # noqa: E402


@pytest.mark.slow
def test_mark_copied_from_two_marked_images_is_accepted_as_the_keys_mark() -> None:
    rng = np.random.default_rng(1)
    sources = [embed(natural(seed), KEY, list(rng.integers(0, 2, 32))) for seed in (101, 102)]  # all the forger sees
    estimate = np.mean([(f - f.mean()) / f.std() for f in map(folded_residual, sources)], axis=0)
    estimate = (estimate - estimate.mean()) / estimate.std()
    target = natural(902)  # an unrelated, unmarked image
    forged = add_tiled(target, estimate, 2.3)
    assert psnr(target, forged) > 40.0  # the forgery is less visible than a genuine mark
    assert not detect(target, KEY).marked_at(1e-3)  # the target really was unmarked
    assert detect(forged, KEY).marked_at(1e-6)  # the attack works: the limit is real


def test_docs_state_that_marked_images_let_anyone_forge_the_mark() -> None:
    doc = " ".join((sampan.watermark.__doc__ or "").split())
    assert "WITHOUT the key" in doc and "copy it (forge)" in doc
    assert "not \"the key holder made this image\"" in doc
    key_doc = " ".join((keys.__doc__ or "").split())
    assert "does NOT stop forging or removal" in key_doc
