"""REVW-3 (fixed): a mirror flip (horizontal, vertical) or a transpose no longer removes the mark.

detect() repeats its whole search on the transposed image (a flip is a transpose followed by a quarter turn,
which the search covers) and counts that in the p-value (stats.MIRRORS). The flipped marked image is detected
at FPR 1e-6 with its payload; a flipped UNMARKED image is still not reported as marked.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "review"))
from _revw_wm import KEY, natural  # type: ignore[import-not-found]  # noqa: E402

from sampan.watermark import detect, embed  # noqa: E402

PAYLOAD = [1, 0] * 16
FLIPS = {
    "hflip": lambda a: a[:, ::-1],
    "vflip": lambda a: a[::-1, :],
    "transpose": lambda a: a.transpose(1, 0, 2),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FLIPS))
def test_mark_survives_a_mirror_flip(name: str) -> None:
    marked = embed(natural(31), KEY, PAYLOAD)
    found = detect(np.ascontiguousarray(FLIPS[name](marked)), KEY)
    assert found.marked_at(1e-6)
    assert found.mirrored
    assert found.bits == PAYLOAD


@pytest.mark.slow
def test_unmarked_flipped_image_is_not_reported_as_marked() -> None:
    found = detect(np.ascontiguousarray(natural(32)[:, ::-1]), KEY)
    assert not found.marked_at(1e-3)
    assert any("2 orientations" in note for note in found.notes)
