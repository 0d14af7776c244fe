"""The keyed CDP: deterministic per (key, serial), unrelated across serials and keys, centred, decodable."""

from __future__ import annotations

import numpy as np
import pytest

from sampan.errors import ConfigError, DataError
from sampan.qr.cdp import cdp_pattern, layout_for, render_digital, render_original

from ._q3_data import KEY, TEXT, layout


def test_pattern_is_deterministic_and_balanced() -> None:
    a = cdp_pattern(KEY, "SN-1", 64)
    assert a.shape == (64, 64) and a.dtype == bool
    assert np.array_equal(a, cdp_pattern(KEY, "SN-1", 64))
    assert 0.45 < a.mean() < 0.55


def test_patterns_of_other_serials_and_keys_are_unrelated() -> None:
    """Knowing one serial's pattern (or using a wrong key) predicts nothing about another pattern."""
    a = cdp_pattern(KEY, "SN-1", 64)
    for other in (cdp_pattern(KEY, "SN-2", 64), cdp_pattern(b"\x01" * 32, "SN-1", 64)):
        agreement = float((a == other).mean())
        assert abs(agreement - 0.5) < 0.04


def test_pattern_refuses_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="key"):
        cdp_pattern(b"short", "SN-1", 32)
    with pytest.raises(DataError, match="serial"):
        cdp_pattern(KEY, "", 32)
    with pytest.raises(ConfigError, match="size"):
        cdp_pattern(KEY, "SN-1", 2)
    with pytest.raises(ConfigError, match="fraction"):
        layout_for(TEXT, fraction=0.5)
    with pytest.raises(ConfigError, match="error"):
        layout_for(TEXT, error="l")


def test_pattern_sits_in_the_centre_square() -> None:
    lay = layout()
    plain = render_digital(TEXT, lay, None)
    marked = render_original(TEXT, KEY, "SN-1", lay)
    o, n = lay.cdp_origin_dots, lay.cdp_dots
    diff = plain != marked
    assert diff[o:o + n, o:o + n].any()
    diff[o:o + n, o:o + n] = False
    assert not diff.any()
    assert o + n // 2 == lay.side_dots // 2 or abs(o + n / 2 - lay.side_dots / 2) < 1


@pytest.mark.parametrize("error", ["q", "h"])
def test_code_with_cdp_still_decodes(error: str) -> None:
    import zxingcpp

    lay = layout_for(TEXT, error=error, fraction=0.3)
    img = np.where(render_original(TEXT, KEY, "SN-9", lay), 0, 255).astype(np.uint8)
    assert [r.text for r in zxingcpp.read_barcodes(img)] == [TEXT]


def test_same_image_as_the_codec_with_the_pattern_slot() -> None:
    """`sampan.qr.codec.render_qr` (Q1) with the pattern as light=True pixels draws the identical code."""
    from sampan.qr.codec import render_qr

    lay = layout_for(TEXT, error="q")
    pattern = cdp_pattern(KEY, "SN-4", lay.size)
    pixels = ~np.kron(pattern, np.ones((lay.cell_dots, lay.cell_dots), dtype=bool))
    theirs = render_qr(TEXT, scale=lay.dots_per_module, border=lay.border, error="q", cdp=pixels)
    ours = np.where(render_original(TEXT, KEY, "SN-4", lay), 0, 255).astype(np.uint8)
    assert np.array_equal(theirs, ours)
