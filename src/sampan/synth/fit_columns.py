"""The fitter's per-column decisions: direct (value-by-value) columns, coarsening of binned ones, tree orientation.

Why apart from `sampan.synth.fit`: these are pure post-processing of public bounds and already-noised counts
(no privacy cost, no data access); `fit` plans the measurements and charges the ledger.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from sampan.synth.discretize import NumericBins, fine_grid, quantile_starts
from sampan.synth.encoders import CategoryGroups, Encoder, build_groups
from sampan.synth.schema import SynthColumn

if TYPE_CHECKING:
    from sampan.synth.fit import SynthConfig

__all__ = ["DIRECT_MAX_VALUES"]


def _pow2_clip(x: float, lo: int, hi: int) -> int:
    return int(min(max(2 ** round(math.log2(max(x, 1.0))), lo), hi))


def _coarsen_map(encoder: Encoder, mass: np.ndarray, groups: int) -> np.ndarray:
    """Parent bins -> at most ``groups`` groups: equal-mass runs of ordered bins, or top categories + rest."""
    k = encoder.n_bins
    if groups >= k:
        return np.arange(k, dtype=np.int64)
    if isinstance(encoder, NumericBins):
        starts = quantile_starts(np.maximum(mass, 0.0), groups)
        return (np.searchsorted(starts, np.arange(k), side="right") - 1).astype(np.int64)
    order = np.argsort(-mass, kind="stable")
    out = np.full(k, groups - 1, dtype=np.int64)
    out[order[: groups - 1]] = np.arange(groups - 1)
    return out


DIRECT_MAX_VALUES = 12


def _is_direct(spec: SynthColumn) -> bool:
    """Categorical, or integer with few public values: modelled value by value, no quantile bins needed."""
    if spec.kind == "categorical":
        return True
    lo, hi = spec.bounds  # type: ignore[misc]
    return spec.integer and hi - lo + 1 <= DIRECT_MAX_VALUES


def _identity_encoder(spec: SynthColumn) -> Encoder:
    if spec.kind == "categorical":
        return CategoryGroups(spec, np.arange(spec.size, dtype=np.int64), np.ones(spec.size))
    grid = fine_grid(spec, 2)
    return NumericBins(grid, np.arange(grid.n_cells + 1, dtype=np.int64), np.ones(grid.n_cells))


def _pool_direct(spec: SynthColumn, table: np.ndarray, noise: float,
                 config: SynthConfig) -> tuple[Encoder, np.ndarray, np.ndarray]:
    """Encoder of a direct column from its noisy (L, values) table; rare categories pooled (post-processing)."""
    counts = table.sum(0)
    L = table.shape[0]
    if spec.kind == "numeric":
        grid = fine_grid(spec, 2)
        enc = NumericBins(grid, np.arange(grid.n_cells + 1, dtype=np.int64), np.maximum(counts, 0.0))
        return enc, table, np.full(table.shape[1], noise**2)
    groups = build_groups(spec, counts, noise * math.sqrt(L), config.category_threshold)
    onehot = np.zeros((spec.size, groups.n_bins))
    onehot[np.arange(spec.size), groups.group_of] = 1.0
    return groups, table @ onehot, onehot.sum(0) * noise**2


def _orient(features: list[str], edges: list[tuple[str, str]]) -> tuple[list[str], dict[str, str | None]]:
    """BFS order and parents; each component is rooted at its first feature in schema order."""
    adj: dict[str, list[str]] = {f: [] for f in features}
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    order: list[str] = []
    parents: dict[str, str | None] = {}
    for root in features:
        if root in parents:
            continue
        parents[root] = None
        queue = [root]
        while queue:
            u = queue.pop(0)
            order.append(u)
            for v in sorted(adj[u], key=features.index):
                if v not in parents:
                    parents[v] = u
                    queue.append(v)
    return order, parents
