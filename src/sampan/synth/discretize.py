"""Numeric columns ↔ model bins: a public fine grid, DP quantile bins on it, and the way back to values.

1. A **fine grid** is built from the public bounds only: one cell per integer for small integer
   ranges, otherwise cells evenly spaced in asinh((x - c)/s) (linear near zero, logarithmic in the
   tails, which suits amounts and balances) plus a point cell at exactly 0 when 0 is inside the
   bounds, since zero-inflation (no payment, empty balance) is everywhere in credit data.
2. The data owner releases a Gaussian-noised histogram over the fine grid (a DP1 release, charged to
   the ledger by the caller). From it, post-processing only: cells below a threshold are treated as
   empty (noise alone would otherwise spread mass over every empty cell). The default threshold is
   Bonferroni-style, Phi^-1(1 - 0.5 / cells) sigmas (at least 1.5), so that on average fewer than half
   a cell of pure noise survives however fine the grid: a surviving noise cell deep in an empty tail
   would otherwise put values there and inflate means. Consecutive
   fine cells are grouped into at most ``k`` bins of roughly equal noisy mass: DP quantile bins.
3. Sampling back: a bin picks a fine cell with probability proportional to its (thresholded) noisy
   mass, then a value uniformly inside the cell; integers are rounded, results stay within bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtri

from sampan.synth.schema import SynthColumn

__all__ = ["FineGrid", "NumericBins", "build_bins", "fine_grid"]

MAX_VALUE_CELLS = 64  # integer ranges up to this many values get one fine cell per value


@dataclass(frozen=True)
class FineGrid:
    """Public fine cells of one numeric column: per-integer values, or ranges with an optional 0 cell."""

    lo: float
    hi: float
    integer: bool
    values_mode: bool  # one cell per integer value lo..hi
    edges: np.ndarray  # ranges mode: increasing edges of the non-zero cells (len = n_range_cells + 1)
    zero_index: int  # index of the point cell {0} among all cells, or -1

    @property
    def n_cells(self) -> int:
        if self.values_mode:
            return int(self.hi - self.lo) + 1
        return len(self.edges) - 1 + (1 if self.zero_index >= 0 else 0)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Fine cell index of each value (values already clipped to the bounds)."""
        x = np.asarray(x, dtype=np.float64)
        if self.values_mode:
            return np.clip(np.rint(x - self.lo), 0, self.n_cells - 1).astype(np.int64)
        n_range = len(self.edges) - 1
        cell = np.clip(np.searchsorted(self.edges, x, side="right") - 1, 0, n_range - 1)
        if self.zero_index < 0:
            return cell.astype(np.int64)
        cell = np.where(cell >= self.zero_index, cell + 1, cell)
        return np.where(x == 0.0, self.zero_index, cell).astype(np.int64)

    def draw(self, cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A value inside each given fine cell (uniform within range cells; exact for point cells)."""
        cells = np.asarray(cells, dtype=np.int64)
        if self.values_mode:
            return self.lo + cells.astype(np.float64)
        range_idx = cells.copy()
        if self.zero_index >= 0:
            range_idx = np.where(cells > self.zero_index, cells - 1, cells)
            range_idx = np.clip(range_idx, 0, len(self.edges) - 2)
        left, right = self.edges[range_idx], self.edges[range_idx + 1]
        values = left + (right - left) * rng.random(cells.shape)
        if self.zero_index >= 0:
            values = np.where(cells == self.zero_index, 0.0, values)
        if self.integer:
            values = np.rint(values)
        return np.clip(values, self.lo, self.hi)

    def cell_range(self, cell: int) -> tuple[float, float]:
        """(low, high) of one fine cell."""
        if self.values_mode:
            return self.lo + cell, self.lo + cell
        if cell == self.zero_index:
            return 0.0, 0.0
        i = cell - 1 if 0 <= self.zero_index < cell else cell
        return float(self.edges[i]), float(self.edges[i + 1])

    def to_dict(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi, "integer": self.integer, "values_mode": self.values_mode,
                "zero_index": self.zero_index}


def _asinh_edges(lo: float, hi: float, n: int, scale: float) -> np.ndarray:
    t = np.linspace(math.asinh(lo / scale), math.asinh(hi / scale), n + 1)
    edges = np.sinh(t) * scale
    edges[0], edges[-1] = lo, hi
    return edges


def fine_grid(spec: SynthColumn, n_cells: int) -> FineGrid:
    """The public fine grid of a numeric column with about ``n_cells`` cells (data-independent)."""
    assert spec.bounds is not None
    lo, hi = spec.bounds
    if spec.integer and hi - lo + 1 <= MAX_VALUE_CELLS:
        return FineGrid(lo, hi, True, True, np.empty(0), -1)
    n_cells = max(int(n_cells), 4)
    scale = max((hi - lo) / 200.0, 1e-12)
    has_zero = lo <= 0.0 <= hi
    if not has_zero:
        return FineGrid(lo, hi, spec.integer, False, _asinh_edges(lo, hi, n_cells, scale), -1)
    # Split the cells between the negative and positive sides by their share of the asinh range.
    t_lo, t_hi = math.asinh(lo / scale), math.asinh(hi / scale)
    n_range = n_cells - 1
    n_neg = int(round(n_range * (-t_lo) / (t_hi - t_lo))) if lo < 0 else 0
    n_neg = min(max(n_neg, 1 if lo < 0 else 0), n_range - (1 if hi > 0 else 0))
    n_pos = n_range - n_neg
    parts = []
    if n_neg:
        parts.append(_asinh_edges(lo, 0.0, n_neg, scale))
    if n_pos:
        pos = _asinh_edges(0.0, hi, n_pos, scale)
        parts.append(pos[1:] if parts else pos)
    edges = np.concatenate(parts)
    return FineGrid(lo, hi, spec.integer, False, edges, n_neg)


@dataclass(frozen=True)
class NumericBins:
    """A numeric column's model bins: fine grid, bin boundaries into it, and within-bin cell weights."""

    grid: FineGrid
    starts: np.ndarray  # bin b covers fine cells starts[b] .. starts[b+1]-1 (len = n_bins + 1)
    fine_mass: np.ndarray  # post-processed noisy counts of the fine cells (>= 0)

    @property
    def n_bins(self) -> int:
        return len(self.starts) - 1

    def encode(self, x: np.ndarray) -> np.ndarray:
        cells = self.grid.encode(x)
        return (np.searchsorted(self.starts, cells, side="right") - 1).astype(np.int64)

    def cell_to_bin(self) -> np.ndarray:
        return (np.searchsorted(self.starts, np.arange(self.grid.n_cells), side="right") - 1).astype(np.int64)

    def decode(self, bins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Values for bin codes: a fine cell by noisy mass within the bin, then a value inside it."""
        bins = np.asarray(bins, dtype=np.int64)
        cells = np.empty(bins.shape, dtype=np.int64)
        u = rng.random(bins.shape)
        for b in np.unique(bins):
            rows = np.flatnonzero(bins == b)
            s, e = int(self.starts[b]), int(self.starts[b + 1])
            w = self.fine_mass[s:e] + 1e-9 * max(float(self.fine_mass[s:e].sum()), 1.0)  # empty bin: uniform
            cum = np.cumsum(w) / w.sum()
            cells[rows] = s + np.minimum(np.searchsorted(cum, u[rows], side="right"), e - s - 1)
        return self.grid.draw(cells, rng)

    def bin_ranges(self) -> list[tuple[float, float]]:
        """(low, high) value range of each bin, for reports."""
        return [(self.grid.cell_range(int(self.starts[b]))[0], self.grid.cell_range(int(self.starts[b + 1]) - 1)[1])
                for b in range(self.n_bins)]


def default_threshold(n_cells: int) -> float:
    """Sigmas a noisy cell must exceed to count as non-empty: about 0.5 false positives per histogram."""
    return max(1.5, float(ndtri(1.0 - 0.5 / max(n_cells, 1))))


def denoise_counts(noisy: np.ndarray, sigma: float, threshold: float) -> np.ndarray:
    """Noisy counts with cells below ``threshold`` sigmas set to zero (post-processing)."""
    noisy = np.asarray(noisy, dtype=np.float64)
    return np.where(noisy > threshold * sigma, noisy, 0.0)


def quantile_starts(mass: np.ndarray, k: int) -> np.ndarray:
    """Group consecutive cells into at most ``k`` bins of about equal mass; heavy cells stand alone."""
    n = len(mass)
    total = float(mass.sum())
    if k >= n:
        return np.arange(n + 1, dtype=np.int64)
    if total <= 0:
        return np.unique(np.linspace(0, n, k + 1).round().astype(np.int64))
    target = total / k
    starts, acc = [0], 0.0
    for i, m in enumerate(mass):
        acc += float(m)
        if acc >= target * 0.999 and i + 1 < n:
            starts.append(i + 1)
            acc = 0.0
    if acc < target / 2 and len(starts) > 1:  # a thin last bin joins its neighbour
        starts.pop()
    starts.append(n)
    return np.asarray(starts, dtype=np.int64)


def build_bins(grid: FineGrid, noisy_fine: np.ndarray, sigma: float, k: int,
               threshold: float | None = None) -> NumericBins:
    """DP quantile bins from a noisy fine histogram (post-processing of a DP release)."""
    tau = default_threshold(grid.n_cells) if threshold is None else threshold
    mass = denoise_counts(noisy_fine, sigma, tau)
    return NumericBins(grid, quantile_starts(mass, max(int(k), 1)), mass)
