"""A party's checks of every request-supplied structure that will index its records, against the public schema.

Why: a fine grid, bin definitions, a coarsening map or a baseline table arrives from the coordinator and is
used to bin or score the party's records. A malformed one (a map too short for its axis, bins that skip a
cell, a zero cell past the grid) fails or changes the release's shape only when some record falls where it
is malformed: a data-dependent outcome that no ledger charge covers. So each structure is checked here on
its public content alone, before any record is touched, and refused the same way whatever the records are.
Grids are not trusted at all: the party rebuilds the fine grid from the schema and the public cell count
(`fine_grid`) and refuses a request whose grid differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sampan.synth.discretize import FineGrid, NumericBins, fine_grid
from sampan.synth.encoders import CategoryGroups, Encoder
from sampan.synth.schema import SynthColumn

__all__ = ["MAX_CLIQUE_CELLS", "MAX_FINE_CELLS", "RequestRefused", "check_baselines", "check_coarsen",
           "check_encoder", "public_grid"]

MAX_FINE_CELLS = 1 << 16  # far above any fitter's fine grid (default at most 256 cells)
MAX_CLIQUE_CELLS = 1 << 24  # a clique's cells: bounds memory and keeps the flat index far from int64 overflow
BASELINE_TOLERANCE = 1e-6


class RequestRefused(ValueError):
    """A request refused on its public content alone (the same refusal whatever the party's records)."""


def _index_array(value: object, where: str) -> np.ndarray:
    """A 1-D array of exact integers (integer dtype, or floats that are finite whole numbers)."""
    a = np.asarray(value)
    if a.ndim != 1 or a.dtype.kind not in "iuf":
        raise RequestRefused(f"{where}: expected a 1-D integer array, got dtype {a.dtype} shape {a.shape}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise RequestRefused(f"{where}: expected whole numbers")
    return a.astype(np.int64)


def public_grid(spec: SynthColumn, grid: FineGrid, where: str) -> FineGrid:
    """The party's own fine grid for ``spec`` with the request's cell count; refused if the request's differs."""
    if spec.kind != "numeric" or spec.bounds is None:
        raise RequestRefused(f"{where}: column '{spec.name}' is not numeric: it has no fine grid")
    edges = np.asarray(grid.edges)
    if edges.ndim != 1 or edges.dtype.kind not in "iuf" or not np.all(np.isfinite(edges)):
        raise RequestRefused(f"{where}: grid edges must be a 1-D array of finite numbers")
    if bool(grid.values_mode):
        n_cells = 4
    else:
        if edges.size < 2 or not np.all(np.diff(edges) > 0):
            raise RequestRefused(f"{where}: grid edges must be strictly increasing (at least 2)")
        lo, hi = spec.bounds
        if edges[0] < lo or edges[-1] > hi:
            raise RequestRefused(f"{where}: grid edges leave the column's public bounds [{lo}, {hi}]")
        n_cells = edges.size - 1 + (1 if int(grid.zero_index) >= 0 else 0)
        if not -1 <= int(grid.zero_index) < n_cells:
            raise RequestRefused(f"{where}: grid zero_index {grid.zero_index} outside -1..{n_cells - 1}")
        if n_cells > MAX_FINE_CELLS:
            raise RequestRefused(f"{where}: {n_cells} fine cells (at most {MAX_FINE_CELLS})")
    own = fine_grid(spec, n_cells)
    same = (own.values_mode == bool(grid.values_mode) and own.zero_index == int(grid.zero_index)
            and own.integer == bool(grid.integer) and float(own.lo) == float(grid.lo)
            and float(own.hi) == float(grid.hi) and own.edges.shape == edges.shape
            and np.allclose(own.edges, edges, rtol=1e-9, atol=1e-9 * max(1.0, float(own.hi - own.lo))))
    if not same:
        raise RequestRefused(f"{where}: the grid is not the public fine grid of column '{spec.name}' "
                             f"with {n_cells} cells")
    return own


def check_encoder(spec: SynthColumn, encoder: Encoder, where: str) -> Encoder:
    """Bin definitions that put every possible value of the column in exactly one bin (checked on the schema)."""
    if spec.kind == "categorical":
        if not isinstance(encoder, CategoryGroups):
            raise RequestRefused(f"{where}: column '{spec.name}' is categorical; got {type(encoder).__name__}")
        group_of = _index_array(encoder.group_of, f"{where} group_of")
        if group_of.size != spec.size or group_of.min() < 0 or group_of.max() >= spec.size:
            raise RequestRefused(f"{where}: group_of must map each of the {spec.size} categories to a group "
                                 f"in 0..{spec.size - 1}")
        weights = np.asarray(encoder.weights, np.float64)
        if weights.shape != (spec.size,):
            raise RequestRefused(f"{where}: weights must have one entry per category ({spec.size})")
        return CategoryGroups(spec, group_of, weights)
    if not isinstance(encoder, NumericBins):
        raise RequestRefused(f"{where}: column '{spec.name}' is numeric; got {type(encoder).__name__}")
    grid = public_grid(spec, encoder.grid, f"{where} grid")
    starts = _index_array(encoder.starts, f"{where} starts")
    if starts.size < 2 or starts[0] != 0 or starts[-1] != grid.n_cells or not np.all(np.diff(starts) > 0):
        raise RequestRefused(f"{where}: bin starts must increase strictly from 0 to the grid's {grid.n_cells} "
                             "cells")
    fine_mass = np.asarray(encoder.fine_mass, np.float64)
    if fine_mass.shape != (grid.n_cells,):
        raise RequestRefused(f"{where}: fine_mass must have one entry per fine cell ({grid.n_cells})")
    return NumericBins(grid, starts, fine_mass)


def check_coarsen(coarsen: object, size: int, where: str) -> np.ndarray:
    """A map from each of the axis's ``size`` bins to a group in 0..size-1."""
    cmap = _index_array(coarsen, where)
    if cmap.size != size or cmap.min() < 0 or cmap.max() >= size:
        raise RequestRefused(f"{where}: the map must send each of the axis's {size} bins to a group in "
                             f"0..{size - 1}")
    return cmap


def check_baselines(features: Sequence[str], sizes: Mapping[str, int],
                    baselines: Mapping[tuple[str, str], np.ndarray], where: str) -> dict[tuple[str, str], np.ndarray]:
    """One baseline per pair of features, shaped (bins a, bins b), non-negative, summing to 1."""
    wanted = {frozenset((a, b)) for i, a in enumerate(features) for b in features[i + 1:]}
    given = [frozenset(k) for k in baselines]
    if len(given) != len(set(given)) or set(given) != wanted:
        raise RequestRefused(f"{where}: baselines must cover each pair of the {len(features)} features once")
    out = {}
    for (a, b), table in baselines.items():
        table = np.asarray(table, np.float64)
        if table.shape != (sizes[a], sizes[b]):
            raise RequestRefused(f"{where}: baseline ({a}, {b}) has shape {table.shape}, bins are "
                                 f"({sizes[a]}, {sizes[b]})")
        if not np.all(np.isfinite(table)) or table.min() < 0 or abs(float(table.sum()) - 1.0) > BASELINE_TOLERANCE:
            raise RequestRefused(f"{where}: baseline ({a}, {b}) must be finite, non-negative and sum to 1")
        out[(str(a), str(b))] = table
    return out
