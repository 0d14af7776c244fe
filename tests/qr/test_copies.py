"""Copies: each kind still decodes, loses CDP detail, and the ML estimator beats a threshold."""

from __future__ import annotations

import numpy as np
import pytest

from sampan.errors import DataError
from sampan.qr.align import align
from sampan.qr.cdp import cdp_pattern, render_digital, render_original
from sampan.qr.channel import PrintCaptureChannel
from sampan.qr.copies import COPY_KINDS, attacker_channel, make_copy, train_estimator
from sampan.qr.features import extract_features
from sampan.qr.verifiers import CorrelationVerifier

from ._q3_data import KEY, TEXT, layout


@pytest.mark.slow
def test_every_copy_decodes_and_scores_below_its_original() -> None:
    lay = layout()
    rng = np.random.default_rng(11)
    channel = PrintCaptureChannel()
    estimator = train_estimator(TEXT, lay, rng, codes=3)
    verifier = CorrelationVerifier(KEY)
    sheet = channel.print_sheet(render_original(TEXT, KEY, "SN-7", lay), rng)
    original = verifier.score(extract_features(channel.capture(sheet, rng), lay), "SN-7")
    for kind in COPY_KINDS:
        copy = make_copy(kind, sheet, rng, estimator=estimator, layout=lay)
        capture = channel.capture(copy, rng)
        assert align(capture, lay).text == TEXT
        assert verifier.score(extract_features(capture, lay), "SN-7") < original - 0.03, kind


@pytest.mark.slow
def test_ml_estimator_beats_local_threshold_on_the_attackers_own_prints() -> None:
    from scipy.ndimage import gaussian_filter

    lay = layout()
    rng = np.random.default_rng(12)
    estimator = train_estimator(TEXT, lay, rng, codes=3)
    scan = attacker_channel()
    errors: dict[str, list[float]] = {"ml": [], "threshold": []}
    for i in range(2):
        truth = cdp_pattern(b"\x07" * 32, f"held-out-{i}", lay.size)
        aligned = align(scan.capture(scan.print_sheet(render_digital(TEXT, lay, truth), rng), rng), lay)
        errors["ml"].append(float((estimator.predict(aligned) != truth).mean()))
        cells = aligned.cells
        errors["threshold"].append(float(((cells < gaussian_filter(cells, 2.0)) != truth).mean()))
    assert np.mean(errors["ml"]) < np.mean(errors["threshold"])


def test_copy_refuses_unknown_kind_and_missing_estimator() -> None:
    sheet = np.ones((64, 64))
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="kind"):
        make_copy("scan", sheet, rng)
    with pytest.raises(DataError, match="estimator"):
        make_copy("ml_reprint", sheet, rng)
