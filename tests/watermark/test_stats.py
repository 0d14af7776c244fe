"""The detection p-value is honest under H0 (unmarked image or wrong key), searches included.

Three levels: (1) the Hoeffding bound itself on arbitrary coefficients; (2) the statistic before any search
is N(0, 1) over 500 (unmarked image, random key) pairs (KS test) and its share below 0.01 is within binomial
bounds; (3) detect's search-corrected p-value is never below 1e-6 and super-uniform, while the naive p-value
of the best offset (no correction) would flag unmarked images: the correction is needed, and made."""

from __future__ import annotations

import numpy as np
import pytest
from _wm_test_images import KINDS, make_image
from scipy import stats

from sampan.watermark import WatermarkError, WatermarkKey, detect, generate_key, threshold_for
from sampan.watermark._image import luma
from sampan.watermark.carriers import carriers_for, tile_to_chips
from sampan.watermark.detect import fixed_statistic, fold, residual
from sampan.watermark.stats import SEARCHES, normalised_correlation, p_value, single_test_p


def test_hoeffding_bound_holds_for_any_coefficients() -> None:
    rng = np.random.default_rng(0)
    for coeffs in (rng.normal(size=400), rng.standard_cauchy(400), np.r_[np.ones(5) * 30, rng.normal(size=395)]):
        signs = rng.choice([-1.0, 1.0], size=(20000, coeffs.size))
        z = signs @ coeffs / np.sqrt(coeffs @ coeffs)
        assert abs(z.std() - 1.0) < 0.03  # exact unit variance whatever the coefficients
        for t in (1.0, 2.0, 3.0):
            assert np.mean(z >= t) <= single_test_p(t) + 3 * np.sqrt(single_test_p(t) / 20000)
    assert normalised_correlation(np.zeros(10), np.ones(10)) == 0.0


def test_threshold_and_p_value_agree() -> None:
    for fpr in (1e-3, 1e-6, 1e-9):
        z = threshold_for(fpr)
        assert p_value(z) == pytest.approx(fpr, rel=1e-9)
        assert p_value(z + 0.01) < fpr < p_value(z - 0.01)
    assert threshold_for(1e-6) > threshold_for(1e-3)
    assert p_value(-3.0) == 1.0 and p_value(0.0) == 1.0
    assert SEARCHES >= 128 * 128  # every tile offset is counted
    for bad in (0.0, 1.0, -1e-3, 2, "0.01"):
        with pytest.raises(WatermarkError, match="fpr"):
            threshold_for(bad)  # type: ignore[arg-type]


def _unmarked(count: int) -> list[np.ndarray]:
    return [make_image(KINDS[i % len(KINDS)], seed=100 + i) for i in range(count)]


@pytest.mark.slow
def test_unsearched_statistic_is_standard_normal_over_500_pairs() -> None:
    images = _unmarked(25)
    z = []
    for image in images:
        chips = tile_to_chips(fold(residual(luma(image))))  # the image's part, shared by its 20 keys
        for _ in range(20):
            carriers = carriers_for(generate_key(), 32)
            z.append(normalised_correlation(chips[carriers.pilot_index], carriers.pilot_sign))
    key = generate_key()
    carriers = carriers_for(key, 32)
    assert fixed_statistic(images[-1], key) == pytest.approx(
        normalised_correlation(chips[carriers.pilot_index], carriers.pilot_sign))
    values = np.array(z)
    assert len(values) == 500
    assert stats.kstest(values, "norm").pvalue > 1e-3
    below = int(np.sum(stats.norm.sf(values) < 0.01))
    assert below <= stats.binom.ppf(0.999, 500, 0.01)
    assert min(single_test_p(float(v)) for v in values) > 1e-6


@pytest.mark.slow
def test_search_corrected_p_values_are_honest_and_the_correction_is_needed() -> None:
    images = _unmarked(5)
    results = [detect(image, WatermarkKey(np.random.default_rng([i, j]).bytes(32), "k"))
               for i, image in enumerate(images) for j in range(3)]
    p = np.array([r.p_value for r in results])
    assert p.min() >= 1e-6
    for alpha in (0.01, 0.1, 0.5):
        assert np.sum(p <= alpha) <= stats.binom.ppf(0.999, len(p), alpha)
    # the best of 16384+ offsets is far from N(0, 1): without the correction unmarked images would be flagged
    naive = np.array([single_test_p(r.statistic) for r in results])
    assert np.mean(naive < 0.01) > 0.5


def test_detect_never_tries_more_geometries_than_the_p_value_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from sampan.watermark.stats import MAX_CANDIDATES, MIRRORS, REFINE_GRID

    detect_module = importlib.import_module("sampan.watermark.detect")
    tried: list[np.ndarray] = []
    real_warp, real_refine = detect_module._warp, detect_module._REFINE_FROM

    def counting_warp(r: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        tried.append(matrix)
        return real_warp(r, matrix)

    monkeypatch.setattr(detect_module, "_warp", counting_warp)
    monkeypatch.setattr(detect_module, "_REFINE_FROM", -1.0)  # force the refinement grid too
    found = detect(make_image("document", seed=300), generate_key())
    assert real_refine > 0 and not found.marked_at(1e-3)
    # identity needs no warp, a 180-degree twin reuses its partner's, the transpose is no warp either:
    # warps <= geometries tried, for the image and its mirror (transpose), and one refinement grid
    assert 0 < len(tried) <= MIRRORS * (MAX_CANDIDATES - 1) + (REFINE_GRID - 1)
    assert MIRRORS == 2 and SEARCHES == MIRRORS * MAX_CANDIDATES * REFINE_GRID * 128 * 128
