"""Per-column encoders between values and model bins, built only from noisy 1-way releases.

Categorical columns: categories whose noisy count is below ``threshold`` sigmas are pooled into one
"rare" bin (as MST's domain compression does), which keeps cliques small; sampling a rare bin picks
one of its categories by noisy count. Numeric columns use `NumericBins` (DP quantile bins).
Encoders hold public domain facts and post-processed noisy counts only; they serialise to JSON +
arrays (no pickle).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sampan.synth.discretize import FineGrid, NumericBins
from sampan.synth.schema import SynthColumn
from sampan.synth.table import category_codes

__all__ = ["CategoryGroups", "Encoder", "build_groups", "encoder_from_state", "encoder_state"]


@dataclass(frozen=True)
class CategoryGroups:
    """Categorical column: category code -> model bin, and within-bin category weights."""

    spec: SynthColumn
    group_of: np.ndarray  # category code -> bin
    weights: np.ndarray  # per category, >= 0: noisy count, used to expand pooled bins

    @property
    def n_bins(self) -> int:
        return int(self.group_of.max()) + 1

    def encode(self, values: np.ndarray) -> np.ndarray:
        return self.group_of[category_codes(values, self.spec)]

    def codes_to_bins(self, codes: np.ndarray) -> np.ndarray:
        return self.group_of[np.asarray(codes, dtype=np.int64)]

    def decode_codes(self, bins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A category code for each bin; pooled bins pick a member by noisy count."""
        bins = np.asarray(bins, dtype=np.int64)
        out = np.empty(bins.shape, dtype=np.int64)
        u = rng.random(bins.shape)
        for b in np.unique(bins):
            members = np.flatnonzero(self.group_of == b)
            rows = np.flatnonzero(bins == b)
            if members.size == 1:
                out[rows] = members[0]
                continue
            w = self.weights[members] + 1e-9 * max(float(self.weights[members].sum()), 1.0)
            cum = np.cumsum(w) / w.sum()
            out[rows] = members[np.minimum(np.searchsorted(cum, u[rows], side="right"), members.size - 1)]
        return out

    def decode(self, bins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cats = np.asarray(self.spec.categories, dtype=object)
        return cats[self.decode_codes(bins, rng)]

    def bin_labels(self) -> list[str]:
        cats = self.spec.categories or ()
        return ["|".join(cats[i] for i in np.flatnonzero(self.group_of == b)) for b in range(self.n_bins)]


Encoder = CategoryGroups | NumericBins


def build_groups(spec: SynthColumn, noisy: np.ndarray, sigma: float, threshold: float = 3.0,
                 compress: bool = True) -> CategoryGroups:
    """Pool categories whose noisy count is below ``threshold`` sigmas (post-processing)."""
    noisy = np.asarray(noisy, dtype=np.float64)
    weights = np.maximum(noisy, 0.0)
    keep = noisy >= threshold * sigma if compress else np.ones(noisy.size, dtype=bool)
    if (~keep).sum() <= 1:
        keep[:] = True
    group_of = np.empty(noisy.size, dtype=np.int64)
    group_of[keep] = np.arange(int(keep.sum()))
    group_of[~keep] = int(keep.sum())
    return CategoryGroups(spec, group_of, weights)


def encoder_state(encoder: Encoder) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(JSON metadata, arrays) of an encoder, for the model folder."""
    if isinstance(encoder, CategoryGroups):
        return {"type": "categorical"}, {"group_of": encoder.group_of, "weights": encoder.weights}
    return ({"type": "numeric", "grid": encoder.grid.to_dict()},
            {"edges": encoder.grid.edges, "starts": encoder.starts, "fine_mass": encoder.fine_mass})


def encoder_from_state(spec: SynthColumn, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Encoder:
    if meta["type"] == "categorical":
        return CategoryGroups(spec, np.asarray(arrays["group_of"], np.int64), np.asarray(arrays["weights"], float))
    g = meta["grid"]
    grid = FineGrid(float(g["lo"]), float(g["hi"]), bool(g["integer"]), bool(g["values_mode"]),
                    np.asarray(arrays["edges"], np.float64), int(g["zero_index"]))
    return NumericBins(grid, np.asarray(arrays["starts"], np.int64), np.asarray(arrays["fine_mass"], np.float64))
