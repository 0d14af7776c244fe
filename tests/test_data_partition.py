"""Partitioners: every split is sorted, disjoint, non-empty and covers all rows; skew is real."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampan.data import dirichlet_label_partition, iid_partition, quantity_skew_partition


def assert_partition(parts: list[np.ndarray], n: int, n_parties: int, min_size: int = 1) -> None:
    assert len(parts) == n_parties
    for p in parts:
        assert p.ndim == 1 and p.dtype.kind in "iu"
        assert p.size >= min_size
        assert np.all(np.diff(p) > 0), "sorted and without repeats"
    joined = np.concatenate(parts)
    assert joined.size == n
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))


@settings(max_examples=60, deadline=None)
@given(n_parties=st.integers(1, 12), extra=st.integers(0, 500), seed=st.integers(0, 2**32 - 1))
def test_iid_partition_invariants(n_parties: int, extra: int, seed: int) -> None:
    n = n_parties + extra
    parts = iid_partition(n, n_parties, np.random.default_rng(seed))
    assert_partition(parts, n, n_parties)
    sizes = [p.size for p in parts]
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=60, deadline=None)
@given(
    n_parties=st.integers(1, 10),
    min_size=st.integers(1, 20),
    extra=st.integers(0, 800),
    alpha=st.floats(0.05, 10.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_quantity_skew_invariants(n_parties: int, min_size: int, extra: int, alpha: float, seed: int) -> None:
    n = n_parties * min_size + extra
    parts = quantity_skew_partition(n, n_parties, np.random.default_rng(seed), alpha=alpha, min_size=min_size)
    assert_partition(parts, n, n_parties, min_size)


@settings(max_examples=40, deadline=None)
@given(
    n_parties=st.integers(1, 6),
    n=st.integers(200, 1500),
    rate=st.floats(0.05, 0.5),
    alpha=st.floats(0.3, 5.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_dirichlet_label_invariants(n_parties: int, n: int, rate: float, alpha: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(np.int8)
    parts = dirichlet_label_partition(y, n_parties, alpha, np.random.default_rng(seed + 1), min_size=10)
    assert_partition(parts, n, n_parties, 10)


def test_dirichlet_handles_multiclass_and_string_labels() -> None:
    y = np.array(["a", "b", "c"] * 100)
    parts = dirichlet_label_partition(y, 4, 1.0, np.random.default_rng(3))
    assert_partition(parts, 300, 4, 10)


def test_dirichlet_alpha_half_skews_default_rates_more_than_iid() -> None:
    rng = np.random.default_rng(42)
    y = (rng.random(10_000) < 0.2).astype(np.int8)
    spreads_dir, spreads_iid = [], []
    for seed in range(10):
        dir_parts = dirichlet_label_partition(y, 5, 0.5, np.random.default_rng(seed))
        iid_parts = iid_partition(y.size, 5, np.random.default_rng(seed))
        spreads_dir.append(np.std([y[p].mean() for p in dir_parts]))
        spreads_iid.append(np.std([y[p].mean() for p in iid_parts]))
    # IID rates sit within sampling noise of 20% (sd ~0.9pp); Dirichlet(0.5) rates are far apart.
    assert max(spreads_iid) < 0.02
    assert np.median(spreads_dir) > 0.08
    assert min(spreads_dir) > 3 * max(spreads_iid)


def test_quantity_skew_small_alpha_gives_unequal_sizes() -> None:
    ratios = []
    for seed in range(10):
        parts = quantity_skew_partition(10_000, 5, np.random.default_rng(seed), alpha=0.3)
        sizes = [p.size for p in parts]
        ratios.append(max(sizes) / min(sizes))
    assert np.median(ratios) > 10


def test_same_seed_same_partition() -> None:
    y = np.random.default_rng(0).integers(0, 2, 500)
    a = dirichlet_label_partition(y, 3, 0.5, np.random.default_rng(7))
    b = dirichlet_label_partition(y, 3, 0.5, np.random.default_rng(7))
    for p, q in zip(a, b, strict=True):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize(
    "call",
    [
        lambda rng: iid_partition(3, 4, rng),
        lambda rng: iid_partition(10, 0, rng),
        lambda rng: iid_partition(-1, 2, rng),
        lambda rng: iid_partition(10.5, 2, rng),
        lambda rng: quantity_skew_partition(100, 5, rng, alpha=0.0),
        lambda rng: quantity_skew_partition(100, 5, rng, alpha=float("nan")),
        lambda rng: quantity_skew_partition(40, 5, rng, min_size=10),
        lambda rng: quantity_skew_partition(100, 5, rng, min_size=0),
        lambda rng: dirichlet_label_partition(np.zeros(40), 5, 1.0, rng),
        lambda rng: dirichlet_label_partition(np.zeros((10, 10)), 2, 1.0, rng, min_size=1),
        lambda rng: dirichlet_label_partition(np.zeros(100), 2, -1.0, rng),
    ],
)
def test_bad_arguments_raise_value_error(call: object) -> None:
    with pytest.raises(ValueError):
        call(np.random.default_rng(0))  # type: ignore[operator]


def test_dirichlet_gives_up_with_clear_error() -> None:
    y = np.array([0] * 50 + [1] * 50)
    with pytest.raises(ValueError, match="in 5 tries"):
        # 10 parties x 10 rows from 100 rows with tiny alpha: essentially impossible
        dirichlet_label_partition(y, 10, 0.01, np.random.default_rng(0), min_size=10, max_retries=5)
