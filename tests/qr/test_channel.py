"""The print-and-capture channel: deterministic by seed, degrades the CDP, keeps the QR decodable."""

from __future__ import annotations

import numpy as np
import pytest

from sampan.qr.align import align, locate
from sampan.qr.cdp import cdp_pattern, render_original
from sampan.qr.channel import DEVICES, Distortions, PrintCaptureChannel
from sampan.qr.features import standard_cells
from sampan.qr.verifiers import keyed_scores

from ._q3_data import KEY, TEXT, layout


def test_channel_is_deterministic_by_seed() -> None:
    ink = render_original(TEXT, KEY, "SN-1", layout())
    channel = PrintCaptureChannel()
    a, b, c = channel.transmit(ink, seed=3), channel.transmit(ink, seed=3), channel.transmit(ink, seed=4)
    assert a.dtype == np.uint8 and np.array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_channel_degrades_the_pattern_but_keeps_it() -> None:
    """The captured cells agree with the template, but far from perfectly: print and capture lose detail."""
    lay = layout()
    ink = render_original(TEXT, KEY, "SN-1", lay)
    sheet = PrintCaptureChannel().print_sheet(ink, np.random.default_rng(0))
    assert ((sheet > 0.2) & (sheet < 0.8)).mean() > 0.02  # grey edges: no longer a binary image
    aligned = align(PrintCaptureChannel().transmit(ink, seed=1), lay)
    corr, hamming = keyed_scores(standard_cells(aligned.cells), KEY, "SN-1")
    assert 0.3 < corr < 0.85
    assert 0.05 < hamming < 0.4
    assert cdp_pattern(KEY, "SN-1", lay.size).shape == aligned.cells.shape


@pytest.mark.parametrize("device", sorted(DEVICES))
def test_code_decodes_through_each_device(device: str) -> None:
    ink = render_original(TEXT, KEY, "SN-2", layout())
    capture = PrintCaptureChannel().with_device(device).transmit(ink, seed=5)
    assert locate(capture)[0] == TEXT


def test_code_decodes_with_stains_and_a_fold() -> None:
    ink = render_original(TEXT, KEY, "SN-3", layout())
    channel = PrintCaptureChannel(distortions=Distortions(stains=2, fold=True))
    clean = PrintCaptureChannel().transmit(ink, seed=6)
    damaged = channel.transmit(ink, seed=6)
    assert np.abs(clean.astype(int) - damaged.astype(int)).mean() > 1.0
    assert locate(damaged)[0] == TEXT


@pytest.mark.parametrize("view", ["rot90", "rot180", "mirror"])
def test_alignment_handles_rotated_and_mirrored_captures(view: str) -> None:
    """The cells line up with the template whichever way round the phone (or a mirror) saw the code."""
    lay = layout()
    capture = PrintCaptureChannel().transmit(render_original(TEXT, KEY, "SN-5", lay), seed=8)
    seen = {"rot90": np.rot90(capture), "rot180": np.rot90(capture, 2), "mirror": capture[:, ::-1]}[view]
    corr, _ = keyed_scores(standard_cells(align(np.ascontiguousarray(seen), lay).cells), KEY, "SN-5")
    assert corr > 0.4
