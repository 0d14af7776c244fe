"""Exact classification metrics: hand-computed cases, edge cases, invariances, slow references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampan.metrics import (
    CalibrationCurve,
    binary_metrics,
    brier_score,
    calibration_curve,
    expected_calibration_error,
    ks_statistic,
    log_loss,
    pr_auc,
    roc_auc,
    roc_curve,
)

# ---------------------------------------------------------------- slow references


def slow_auc(y: list[int], p: list[float]) -> float:
    """O(n²) pairwise definition: P(pos > neg) + ½ P(pos == neg)."""
    pos = [s for s, t in zip(p, y, strict=False) if t == 1]
    neg = [s for s, t in zip(p, y, strict=False) if t == 0]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def slow_average_precision(y: list[int], p: list[float]) -> float:
    """Loop over distinct thresholds, high to low: Σ (R_k − R_{k−1}) · P_k."""
    n_pos = sum(y)
    total, prev_recall = 0.0, 0.0
    for t in sorted(set(p), reverse=True):
        tp = sum(1 for s, lab in zip(p, y, strict=False) if s >= t and lab == 1)
        fp = sum(1 for s, lab in zip(p, y, strict=False) if s >= t and lab == 0)
        recall = tp / n_pos
        total += (recall - prev_recall) * tp / (tp + fp)
        prev_recall = recall
    return total


def slow_ks(y: list[int], p: list[float]) -> float:
    n_pos, n_neg = sum(y), len(y) - sum(y)
    best = 0.0
    for t in set(p):
        tpr = sum(1 for s, lab in zip(p, y, strict=False) if s >= t and lab == 1) / n_pos
        fpr = sum(1 for s, lab in zip(p, y, strict=False) if s >= t and lab == 0) / n_neg
        best = max(best, abs(tpr - fpr))
    return best


# ---------------------------------------------------------------- hand-computed cases

Y4 = [0, 0, 1, 1]
P4 = [0.1, 0.4, 0.35, 0.8]


def test_auc_hand_computed() -> None:
    # positives {0.35, 0.8} vs negatives {0.1, 0.4}: 0.35 beats 0.1 only, 0.8 beats both -> 3/4
    assert roc_auc(Y4, P4) == pytest.approx(0.75)


def test_auc_ties_count_half() -> None:
    # pos {0.5, 0.9}, neg {0.5, 0.2}: 0.5 (tie) + 1 + 1 + 1 = 3.5 of 4 pairs
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(0.875)


def test_roc_curve_hand_computed() -> None:
    fpr, tpr, thr = roc_curve(Y4, P4)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_array_equal(thr, [np.inf, 0.8, 0.4, 0.35, 0.1])


def test_roc_curve_distinct_thresholds_only() -> None:
    fpr, tpr, thr = roc_curve([0, 1, 0, 1, 1], [0.3, 0.3, 0.3, 0.7, 0.7])
    np.testing.assert_array_equal(thr, [np.inf, 0.7, 0.3])
    np.testing.assert_allclose(tpr, [0, 2 / 3, 1])
    np.testing.assert_allclose(fpr, [0, 0, 1])


def test_pr_auc_hand_computed() -> None:
    # thresholds 0.9: P=1, R=1/2; 0.8: R unchanged; 0.7: P=2/3, R=1 -> 1/2·1 + 1/2·2/3
    assert pr_auc([1, 0, 1, 0, 0], [0.9, 0.8, 0.7, 0.6, 0.5]) == pytest.approx(0.5 + 1 / 3)
    # scikit-learn's documented example: average_precision_score -> 0.8333...
    assert pr_auc(Y4, P4) == pytest.approx(0.8333333333333333)


def test_pr_auc_ties_form_one_threshold() -> None:
    # 0.5 (one pos, one neg tied): P=1/2, R=1/2; 0.2: P=2/3, R=1 -> 1/4 + 1/3
    assert pr_auc([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(0.25 + 1 / 3)


def test_pr_auc_edge_cases() -> None:
    assert pr_auc([1, 1, 1], [0.1, 0.2, 0.3]) == 1.0
    assert pr_auc([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)  # = positive rate
    with pytest.raises(ValueError, match="no positive"):
        pr_auc([0, 0], [0.1, 0.2])


def test_ks_hand_computed() -> None:
    assert ks_statistic(Y4, P4) == pytest.approx(0.5)
    assert ks_statistic([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0


def test_brier_and_log_loss_hand_computed() -> None:
    assert brier_score([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3]) == pytest.approx(0.0375)
    assert log_loss([1, 0], [0.8, 0.3]) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)


def test_log_loss_clips_certain_mistakes() -> None:
    value = log_loss([1, 0], [0.0, 1.0])
    assert math.isfinite(value)
    assert value == pytest.approx(-math.log(1e-12), rel=1e-6)
    assert log_loss([1, 0], [1.0, 0.0]) == pytest.approx(0.0, abs=1e-11)
    with pytest.raises(ValueError, match="eps"):
        log_loss([1, 0], [0.5, 0.5], eps=0.0)


def test_calibration_curve_hand_computed() -> None:
    y = [0, 1, 1, 0, 1]
    p = [0.05, 0.15, 0.95, 0.12, 1.0]
    curve = calibration_curve(y, p, n_bins=10)
    assert isinstance(curve, CalibrationCurve)
    np.testing.assert_allclose(curve.mean_predicted, [0.05, 0.135, 0.975])
    np.testing.assert_allclose(curve.fraction_positive, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(curve.counts, [1, 2, 2])  # empty bins skipped; 1.0 in the last bin
    # ECE = (1·0.05 + 2·0.365 + 2·0.025) / 5
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(0.166)


def test_calibration_bins_are_closed_on_the_left() -> None:
    curve = calibration_curve([0, 1], [0.5, 0.49], n_bins=2)
    np.testing.assert_allclose(curve.mean_predicted, [0.49, 0.5])


def test_calibration_quantile_strategy_balances_counts() -> None:
    p = np.arange(100) / 100
    y = (np.arange(100) % 2).astype(int)
    curve = calibration_curve(y, p, n_bins=4, strategy="quantile")
    assert curve.counts.tolist() == [25, 25, 25, 25]
    np.testing.assert_allclose(curve.mean_predicted, [0.12, 0.37, 0.62, 0.87])
    # heavily tied scores collapse bins instead of failing
    tied = calibration_curve([0, 1, 0, 1], [0.2, 0.2, 0.2, 0.9], n_bins=4, strategy="quantile")
    assert tied.counts.sum() == 4
    with pytest.raises(ValueError, match="strategy"):
        calibration_curve(y, p, strategy="kmeans")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_bins"):
        calibration_curve(y, p, n_bins=0)


def test_perfectly_calibrated_has_zero_ece() -> None:
    y = [0, 0, 0, 1, 0, 1, 1, 1]
    p = [0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75]
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-15)


# ---------------------------------------------------------------- edge cases and invariances


def test_all_ties_perfect_and_reversed() -> None:
    y = [0, 1, 0, 1, 1]
    assert roc_auc(y, [0.3] * 5) == 0.5
    assert ks_statistic(y, [0.3] * 5) == 0.0
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert ks_statistic([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 1.0  # |TPR − FPR|, direction-free


def test_auc_invariant_to_monotone_transforms() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 500)
    p = np.round(rng.random(500), 2)  # with ties
    base = roc_auc(y, p)
    assert roc_auc(y, p**3) == pytest.approx(base, abs=1e-15)
    assert roc_auc(y, np.sqrt(p)) == pytest.approx(base, abs=1e-15)
    assert roc_auc(y, 600 + 50 * np.log1p(p)) == pytest.approx(base, abs=1e-15)  # scorecard points
    assert roc_auc(y, 1 - p) == pytest.approx(1 - base, abs=1e-12)
    assert roc_auc(1 - y, p) == pytest.approx(1 - base, abs=1e-12)
    assert ks_statistic(y, p**3) == pytest.approx(ks_statistic(y, p), abs=1e-15)


def test_ranking_metrics_accept_scores_outside_unit_interval() -> None:
    assert roc_auc([0, 1], [-3.0, 2.5]) == 1.0
    assert ks_statistic([0, 1], [310, 720]) == 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score([0, 1], [-3.0, 2.5])


def test_accepts_lists_bools_and_column_vectors() -> None:
    y = np.array([[False], [True], [False], [True]])
    p = np.array([[0.1], [0.8], [0.4], [0.35]])
    assert roc_auc(y, p) == roc_auc([0, 1, 0, 1], [0.1, 0.8, 0.4, 0.35]) == 0.75
    assert roc_auc([0.0, 1.0], [0, 1]) == 1.0


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "func", [roc_auc, roc_curve, pr_auc, ks_statistic, brier_score, log_loss,
             calibration_curve, expected_calibration_error, binary_metrics],
)
def test_validation_errors(func) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="different lengths"):
        func([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="binary"):
        func([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="binary"):
        func([-1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="0/1"):
        func(["a", "b"], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        func([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="empty"):
        func([], [])
    with pytest.raises(ValueError, match="one-dimensional"):
        func(np.zeros((2, 2)), np.zeros((2, 2)))


@pytest.mark.parametrize(
    "func", [brier_score, log_loss, calibration_curve, expected_calibration_error, binary_metrics]
)
def test_probabilities_must_be_in_unit_interval(func) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="probabilities"):
        func([0, 1], [0.1, 1.2])
    with pytest.raises(ValueError, match="probabilities"):
        func([0, 1], [-0.1, 0.5])


@pytest.mark.parametrize("func", [roc_auc, roc_curve, ks_statistic, binary_metrics])
def test_single_class_is_an_error(func) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="only one class"):
        func([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="only one class"):
        func([0, 0], [0.1, 0.2])


# ---------------------------------------------------------------- binary_metrics and speed


def test_binary_metrics_matches_individual_functions() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 2000)
    p = np.clip(0.3 * y + 0.7 * rng.random(2000), 0, 1)
    m = binary_metrics(y, p)
    assert list(m) == ["auc", "pr_auc", "ks", "brier", "log_loss", "ece", "n", "positive_rate"]
    assert all(isinstance(v, float) for v in m.values())
    assert m["auc"] == roc_auc(y, p)
    assert m["pr_auc"] == pr_auc(y, p)
    assert m["ks"] == ks_statistic(y, p)
    assert m["brier"] == brier_score(y, p)
    assert m["log_loss"] == log_loss(y, p)
    assert m["ece"] == expected_calibration_error(y, p)
    assert m["n"] == 2000.0
    assert m["positive_rate"] == pytest.approx(y.mean())


def test_one_million_rows_are_ranked_exactly() -> None:
    """A million rows (timings live in bench/, never here): AUC equals the rank-sum formula."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1_000_000)
    p = rng.random(1_000_000)
    ranks = np.empty(p.size)
    ranks[np.argsort(p, kind="stable")] = np.arange(1, p.size + 1)
    n_pos = int(y.sum())
    expected = (ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (p.size - n_pos))
    assert roc_auc(y, p) == pytest.approx(expected, abs=1e-12)
    assert binary_metrics(y, p)["auc"] == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- properties vs slow references

labels_and_scores = st.integers(min_value=2, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < len(y)),
        st.lists(
            st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(0.0, 1.0)),
            min_size=n,
            max_size=n,
        ),
    )
)


@settings(max_examples=200, deadline=None)
@given(labels_and_scores)
def test_auc_matches_pairwise_reference(data: tuple[list[int], list[float]]) -> None:
    y, p = data
    assert roc_auc(y, p) == pytest.approx(slow_auc(y, p), abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(labels_and_scores)
def test_pr_auc_and_ks_match_references(data: tuple[list[int], list[float]]) -> None:
    y, p = data
    assert pr_auc(y, p) == pytest.approx(slow_average_precision(y, p), abs=1e-12)
    assert ks_statistic(y, p) == pytest.approx(slow_ks(y, p), abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(labels_and_scores)
def test_roc_curve_shape_and_trapezoid_equals_auc(data: tuple[list[int], list[float]]) -> None:
    y, p = data
    fpr, tpr, thr = roc_curve(y, p)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.all(np.diff(thr) < 0) and len(thr) == len(set(p)) + 1
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(roc_auc(y, p), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(labels_and_scores)
def test_calibration_counts_and_means_are_consistent(data: tuple[list[int], list[float]]) -> None:
    y, p = data
    for strategy in ("uniform", "quantile"):
        curve = calibration_curve(y, p, n_bins=5, strategy=strategy)
        assert curve.counts.sum() == len(y)
        assert np.all(curve.counts > 0)
        assert np.dot(curve.counts, curve.fraction_positive) == pytest.approx(sum(y))
        assert np.dot(curve.counts, curve.mean_predicted) == pytest.approx(sum(p))
    assert 0.0 <= expected_calibration_error(y, p) <= 1.0
