"""Federated score histograms: pooled counts must reproduce the exact metrics up to the bin ties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampan.metrics import (
    ScoreHistogram,
    calibration_curve,
    expected_calibration_error,
    ks_statistic,
    pr_auc,
    roc_auc,
    roc_curve,
)
from sampan.wire import Message, decode, encode


def _data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(rng.beta(2, 5, n) + 0.25 * y, 0.0, 1.0)
    return y, p


def _binned(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Each score replaced by its bin index: exactly the ties the histogram sees."""
    return np.minimum(np.floor(p * n_bins), n_bins - 1)


def test_from_scores_counts() -> None:
    h = ScoreHistogram.from_scores([0, 1, 1, 0, 1], [0.0, 0.1, 0.55, 0.5, 1.0], n_bins=10)
    assert h.n_bins == 10 and h.n == 5 and h.positive_rate == pytest.approx(0.6)
    np.testing.assert_array_equal(h.pos, [0, 1, 0, 0, 0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(h.neg, [1, 0, 0, 0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_allclose(h.sum_p[[0, 1, 5, 9]], [0.0, 0.1, 1.05, 1.0])
    np.testing.assert_allclose(h.edges, np.linspace(0, 1, 11))
    assert h.pos.dtype == np.int64 and h.sum_p.dtype == np.float64


def test_default_has_2000_bins() -> None:
    assert ScoreHistogram.from_scores([0, 1], [0.2, 0.7]).n_bins == 2000


def test_auc_within_1e3_of_exact_on_10k_scores() -> None:
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 10_000)
    p = rng.random(10_000)
    h = ScoreHistogram.from_scores(y, p)
    exact = roc_auc(y, p)
    assert abs(h.auc() - exact) < 1e-3
    assert abs(h.auc() - exact) <= h.auc_error_bound() + 1e-15


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 300), st.sampled_from([1, 3, 10, 50, 2000]))
def test_histogram_equals_exact_metrics_on_binned_scores(seed: int, n: int, n_bins: int) -> None:
    y, p = _data(seed, n)
    if y.min() == y.max():
        y[0] = 1 - y[0]
    h = ScoreHistogram.from_scores(y, p, n_bins=n_bins)
    q = _binned(p, n_bins)
    assert h.auc() == pytest.approx(roc_auc(y, q), abs=1e-12)
    assert h.pr_auc() == pytest.approx(pr_auc(y, q), abs=1e-12)
    assert h.ks() == pytest.approx(ks_statistic(y, q), abs=1e-12)
    assert h.ks() <= ks_statistic(y, p) + 1e-12  # fewer thresholds: never above the exact KS
    assert abs(h.auc() - roc_auc(y, p)) <= h.auc_error_bound() + 1e-12
    fpr, tpr, thr = h.roc_curve()
    efpr, etpr, ethr = roc_curve(y, q)
    np.testing.assert_allclose(fpr, efpr)
    np.testing.assert_allclose(tpr, etpr)
    np.testing.assert_allclose(thr[1:], ethr[1:] / n_bins)  # threshold = the bin's lower edge


def test_calibration_matches_exact_when_bins_align() -> None:
    y, p = _data(5, 5000)
    h = ScoreHistogram.from_scores(y, p)
    for n_bins in (10, 20, 40):
        exact = calibration_curve(y, p, n_bins=n_bins)
        pooled = h.calibration(n_bins)
        np.testing.assert_array_equal(pooled.counts, exact.counts)
        np.testing.assert_allclose(pooled.mean_predicted, exact.mean_predicted, rtol=1e-12)
        np.testing.assert_allclose(pooled.fraction_positive, exact.fraction_positive, rtol=1e-12)
        assert h.expected_calibration_error(n_bins) == pytest.approx(
            expected_calibration_error(y, p, n_bins=n_bins), abs=1e-12
        )


def test_merge_equals_pooled_data_and_is_associative() -> None:
    parts = [_data(seed, n) for seed, n in ((1, 300), (2, 1000), (3, 57))]
    a, b, c = (ScoreHistogram.from_scores(y, p, n_bins=100) for y, p in parts)
    pooled = ScoreHistogram.from_scores(
        np.concatenate([y for y, _ in parts]), np.concatenate([p for _, p in parts]), n_bins=100
    )
    left, right = (a + b) + c, a.merge(b.merge(c))
    for h in (left, right, sum([a, b, c]), c + b + a):
        np.testing.assert_array_equal(h.pos, pooled.pos)
        np.testing.assert_array_equal(h.neg, pooled.neg)
        np.testing.assert_allclose(h.sum_p, pooled.sum_p, rtol=1e-12)
        assert h.auc() == pooled.auc()
    assert a + ScoreHistogram.empty(100) == a


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 50)), min_size=3, max_size=3))
def test_merge_associativity_property(specs: list[tuple[int, int]]) -> None:
    a, b, c = (ScoreHistogram.from_scores(*_data(seed, n), n_bins=20) for seed, n in specs)
    left, right = (a + b) + c, a + (b + c)
    np.testing.assert_array_equal(left.pos, right.pos)
    np.testing.assert_array_equal(left.neg, right.neg)
    np.testing.assert_allclose(left.sum_p, right.sum_p, rtol=1e-12)


def test_merge_requires_same_bins() -> None:
    a = ScoreHistogram.from_scores([0, 1], [0.1, 0.9], n_bins=10)
    b = ScoreHistogram.from_scores([0, 1], [0.1, 0.9], n_bins=20)
    with pytest.raises(ValueError, match="different bins"):
        a.merge(b)
    with pytest.raises(ValueError, match="different bins"):
        _ = a + b
    with pytest.raises(TypeError):
        a.merge(np.zeros(3))  # type: ignore[arg-type]


def test_array_round_trip_through_a_wire_message() -> None:
    h = ScoreHistogram.from_scores(*_data(9, 400))
    arrays = h.to_arrays()
    assert set(arrays) == {"edges", "pos", "neg", "sum_p"}
    message = Message(run_id="r1", step=3, sender="bank_a", recipient="coordinator",
                      kind="eval_histogram", arrays=arrays)
    back = ScoreHistogram.from_arrays(dict(decode(encode(message)).arrays))
    assert back == h
    assert back.auc() == h.auc()


def test_arrays_are_frozen_and_exports_are_copies() -> None:
    pos = np.array([1, 0], dtype=np.int64)
    h = ScoreHistogram.from_arrays({"edges": [0.0, 0.5, 1.0], "pos": pos, "neg": [0, 2], "sum_p": [0.1, 1.5]})
    with pytest.raises(ValueError):
        h.pos[0] = 5
    pos[0] = 7  # the caller's array is not aliased
    assert h.pos[0] == 1
    exported = h.to_arrays()
    exported["pos"][0] = 9
    assert h.pos[0] == 1


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"edges": [0.0, 0.5, 1.0], "pos": [1, 0], "neg": [0, 1]}, "missing"),
        ({"edges": [0.0, 0.5, 1.0], "pos": [1, 0, 0], "neg": [0, 1], "sum_p": [0.1, 0.9]}, "shape"),
        ({"edges": [0.0, 0.5, 1.0], "pos": [-1, 0], "neg": [0, 1], "sum_p": [0.1, 0.9]}, "non-negative"),
        ({"edges": [0.0, 0.5, 1.0], "pos": [0.5, 0], "neg": [0, 1], "sum_p": [0.1, 0.9]}, "integer"),
        ({"edges": [0.0, 0.7, 0.5, 1.0], "pos": [1, 0, 0], "neg": [0, 1, 0], "sum_p": [0.1, 0.9, 0]}, "edges"),
        ({"edges": [0.1, 1.0], "pos": [1], "neg": [0], "sum_p": [0.1]}, "edges"),
        ({"edges": [0.0, 0.5, 1.0], "pos": [1, 0], "neg": [0, 1], "sum_p": [np.nan, 0.9]}, "sum_p"),
    ],
)
def test_from_arrays_rejects_bad_input(arrays: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScoreHistogram.from_arrays(arrays)


def test_undefined_metrics_raise() -> None:
    only_pos = ScoreHistogram.from_scores([1, 1], [0.2, 0.8])
    with pytest.raises(ValueError, match="only one class"):
        only_pos.auc()
    with pytest.raises(ValueError, match="only one class"):
        only_pos.ks()
    assert only_pos.pr_auc() == 1.0
    empty = ScoreHistogram.empty(50)
    assert empty.n == 0
    with pytest.raises(ValueError, match="no positive"):
        empty.pr_auc()
    with pytest.raises(ValueError, match="empty"):
        empty.calibration()
    with pytest.raises(ValueError, match="probabilities"):
        ScoreHistogram.from_scores([0, 1], [0.2, 1.5])
    with pytest.raises(ValueError, match="n_bins"):
        ScoreHistogram.from_scores([0, 1], [0.2, 0.5], n_bins=0)


def test_all_ties_and_perfect_separation() -> None:
    assert ScoreHistogram.from_scores([0, 1, 0, 1], [0.4] * 4).auc() == 0.5
    assert ScoreHistogram.from_scores([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]).auc() == 1.0
    assert ScoreHistogram.from_scores([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]).auc() == 0.0
