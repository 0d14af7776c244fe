"""Binned uint8 matrices and block-wise histograms (issue 15): same sums as the flat reference, the same bytes on any
engine, and memory that grows with the binned matrix, not with n x features floats."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from sampan.compute import use_engine
from sampan.models.gbdt import GBDTParams, apply_bins, make_slots, quantile_bin_edges
from sampan.models.gbdt_hist import bin_matrix, node_histograms, ring_node_histograms
from sampan.models.gbdt_local import fit_local
from sampan.vertical.histograms import partner_level_sums, ring_bincount


class _ThreadEngine:
    """Blocks on threads, finished out of order: results must still come back (and sum) in block order."""

    name = "threads"

    def put(self, data: Any) -> Any:
        return data

    def map_blocks(self, fn: Callable[..., Any], data: Any, blocks: Sequence[tuple[int, int]], *args: Any) -> list[Any]:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(fn, data, s, e, *args) for s, e in reversed(blocks)]
            return [f.result() for f in reversed(futures)]

    def close(self) -> None:
        return None


def _table(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X[rng.random((n, d)) < 0.05] = np.nan
    return X


def test_bin_matrix_equals_apply_bins_for_float32_float64_and_row_subsets() -> None:
    X = _table(150_000, 7)
    edges = [quantile_bin_edges(X[:, j], 16) for j in range(X.shape[1])]
    rows = np.random.default_rng(1).permutation(len(X))[:90_000]
    for missing in (False, True):
        ref = apply_bins(X[rows], edges, missing=missing)
        got = bin_matrix(X, edges, missing=missing, rows=rows)
        assert got.dtype == np.uint8 and got.flags.f_contiguous
        np.testing.assert_array_equal(got, ref)
        X32 = X.astype(np.float32)
        np.testing.assert_array_equal(bin_matrix(X32, edges, missing=missing), apply_bins(X32, edges, missing=missing))


def test_node_histograms_match_a_flat_bincount_and_are_the_same_bytes_on_another_engine() -> None:
    rng = np.random.default_rng(2)
    n, n_bins = 200_000, [5, 17, 3, 256]
    bins = np.column_stack([rng.integers(0, b, n) for b in n_bins]).astype(np.uint16)
    values = np.rint(rng.standard_normal((2, n)) * 2.0 ** 32) / 2.0 ** 32  # grid values, as the learner's
    nodes = [np.sort(rng.choice(n, 70_000, replace=False)), np.arange(0, n, 3), np.zeros(0, dtype=np.int64)]
    got = node_histograms(bins, n_bins, nodes, values)
    offsets = np.concatenate([[0], np.cumsum(n_bins)[:-1]])
    for k, rows in enumerate(nodes):
        flat = (bins[rows].astype(np.int64) + offsets).ravel()
        for v in range(2):
            ref = np.bincount(flat, weights=np.repeat(values[v, rows], len(n_bins)), minlength=sum(n_bins))
            np.testing.assert_array_equal(got[k, v], ref)
    with use_engine(_ThreadEngine()):
        assert node_histograms(bins, n_bins, nodes, values).tobytes() == got.tobytes()


def test_ring_histograms_are_exact_modulo_2_64_on_any_engine() -> None:
    rng = np.random.default_rng(3)
    n, n_bins = 150_000, [4, 9]
    bins = np.column_stack([rng.integers(0, b, n) for b in n_bins]).astype(np.uint8)
    values = rng.integers(0, 2 ** 64, (2, n), dtype=np.uint64)
    nodes = [np.arange(n), np.arange(1, n, 2)]
    got = ring_node_histograms(bins, n_bins, nodes, values)
    offsets = np.concatenate([[0], np.cumsum(n_bins)[:-1]])
    for k, rows in enumerate(nodes):
        flat = (bins[rows].astype(np.int64) + offsets).ravel()
        for v in range(2):
            col = [int(x) for x in values[v, rows]]
            exact = [0] * sum(n_bins)
            for i, r in enumerate(flat.reshape(len(rows), len(n_bins))):
                for b in r:
                    exact[int(b)] = (exact[int(b)] + col[i]) % 2 ** 64
            np.testing.assert_array_equal(got[k, v], np.array(exact, dtype=np.uint64))
            if len(rows) < 2 ** 16:  # the old one-shot sum is exact only for small bins
                np.testing.assert_array_equal(got[k, v], ring_bincount(flat, np.repeat(values[v, rows], 2),
                                                                       sum(n_bins)))
    with use_engine(_ThreadEngine()):
        assert ring_node_histograms(bins, n_bins, nodes, values).tobytes() == got.tobytes()
    pads = np.zeros((2, 2, sum(n_bins)), dtype=np.uint64)
    np.testing.assert_array_equal(partner_level_sums(bins, n_bins, values, nodes, pads), got)


def _fit_peak(n: int, d: int) -> int:
    """tracemalloc peak of binning a float32 table and fitting 2 trees on it (the table itself not counted)."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((n, d), dtype=np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-X[:, 0]))).astype(float)
    edges = [quantile_bin_edges(X[:5000, j], 32) for j in range(d)]
    slots = {"all": make_slots("all", [f"f{j}" for j in range(d)], edges, missing=True)}
    tracemalloc.start()
    try:
        bins = bin_matrix(X, edges, missing=True)
        fit_local(GBDTParams(n_trees=2, max_depth=3, n_bins=32), {"all": bins}, slots, y)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_per_row_is_the_binned_matrix_plus_per_row_gradients() -> None:
    d = 130  # 30 bank + 100 partner features, pooled
    small, large = _fit_peak(100_000, d), _fit_peak(200_000, d)
    per_row = (large - small) / 100_000
    # uint8 bins (d bytes) + per-row vectors of the learner: y, raw, g, h and their temporaries, node row indices
    # (measured: d + ~17 eight-byte values); the flat int64 index and the gradients repeated per feature of before
    # cost > 3 * 8 * d bytes per row (3120 here)
    assert per_row < d + 8 * 24, f"{per_row:.0f} bytes per row at {d} features"


class _CountingEngine(_ThreadEngine):
    """Counts `put`s and hands out a wrapper, as a cluster engine hands out object references."""

    def __init__(self) -> None:
        self.puts = 0  # puts of a binned (uint8) matrix; per-request rows and values are put once per request

    def put(self, data: Any) -> Any:
        self.puts += isinstance(data, np.ndarray) and data.dtype == np.uint8
        return data.copy()


def test_a_binned_matrix_goes_to_a_cluster_engine_once_and_the_local_engine_keeps_no_reference() -> None:
    import gc
    import weakref

    rng = np.random.default_rng(5)
    bins = rng.integers(0, 8, (1000, 3)).astype(np.uint8)
    g = np.stack([rng.standard_normal(1000), rng.random(1000)])
    engine = _CountingEngine()
    with use_engine(engine):
        first = node_histograms(bins, [8, 8, 8], [np.arange(1000)], g)
        again = node_histograms(bins, [8, 8, 8], [np.arange(0, 1000, 2)], g)
    assert engine.puts == 1 and first.shape == again.shape == (1, 2, 24)
    local = rng.integers(0, 8, (1000, 3)).astype(np.uint8)
    node_histograms(local, [8, 8, 8], [np.arange(1000)], g)
    ref = weakref.ref(local)
    del local
    gc.collect()
    assert ref() is None
