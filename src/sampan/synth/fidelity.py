"""Fidelity of a synthetic table to the real one: per column, per pair, and one overall score.

- Column distance: total variation distance (TVD) between the two distributions, categorical columns
  over their categories, numeric columns over 20 quantile bins of the real column; numeric columns
  also get the Kolmogorov-Smirnov statistic.
- Pair distance: TVD between the 2-way contingency tables of every pair (numeric columns in 10
  quantile bins of the real column; at most ``max_pairs`` pairs, a fixed random subset beyond).
- Correlation difference: mean absolute difference of the Pearson correlation matrices of the
  numeric columns and the label (as 0/1).
- Overall score = 1 - (mean column TVD + mean pair TVD) / 2, in [0, 1], higher is better.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from typing import Any

import numpy as np

from sampan.synth.schema import SynthColumn, SynthSchema
from sampan.synth.table import category_codes

__all__ = ["fidelity"]


def _bin_codes(real: np.ndarray, synth: np.ndarray, spec: SynthColumn, bins: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Both columns coded on the same categories / real-quantile bins."""
    if spec.kind == "categorical":
        return category_codes(real.astype(object), spec), category_codes(synth.astype(object), spec), spec.size
    edges = np.unique(np.quantile(real.astype(np.float64), np.linspace(0, 1, bins + 1))[1:-1])
    return (np.searchsorted(edges, real, side="right"), np.searchsorted(edges, synth, side="right"), edges.size + 1)


def _tvd(a: np.ndarray, b: np.ndarray, size: int) -> float:
    pa = np.bincount(a, minlength=size) / max(a.size, 1)
    pb = np.bincount(b, minlength=size) / max(b.size, 1)
    return float(0.5 * np.abs(pa - pb).sum())


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.sort(a.astype(np.float64)), np.sort(b.astype(np.float64))
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(np.abs(cdf_a - cdf_b).max())


def _numeric_matrix(table: Mapping[str, np.ndarray], schema: SynthSchema) -> tuple[list[str], np.ndarray]:
    names, cols = [], []
    for spec in schema.columns:
        if spec.kind == "numeric":
            names.append(spec.name)
            cols.append(np.asarray(table[spec.name], dtype=np.float64))
        elif spec.name == schema.label:
            names.append(spec.name)
            cols.append((np.asarray(table[spec.name]).astype(str) == schema.positive).astype(np.float64))
    return names, np.column_stack(cols) if cols else np.empty((0, 0))


def _corr(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    c = z.T @ z / max(len(x), 1)
    c[:, std == 0] = 0.0
    c[std == 0, :] = 0.0
    return c


def fidelity(real: Mapping[str, np.ndarray], synthetic: Mapping[str, np.ndarray], schema: SynthSchema,
             *, max_pairs: int = 300, column_bins: int = 20, pair_bins: int = 10) -> dict[str, Any]:
    """Column, pair and correlation distances and the overall score (see module doc)."""
    columns: dict[str, dict[str, float]] = {}
    coded: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    for spec in schema.columns:
        r, s = np.asarray(real[spec.name]), np.asarray(synthetic[spec.name])
        a, b, size = _bin_codes(r, s, spec, column_bins)
        entry = {"tvd": _tvd(a, b, size)}
        if spec.kind == "numeric":
            entry["ks"] = _ks(r, s)
            entry["mean_real"], entry["mean_synthetic"] = float(r.astype(float).mean()), float(s.astype(float).mean())
        columns[spec.name] = entry
        coded[spec.name] = _bin_codes(r, s, spec, pair_bins)
    pairs = list(combinations(schema.names, 2))
    if len(pairs) > max_pairs:
        pick = np.random.default_rng(0).choice(len(pairs), max_pairs, replace=False)  # fixed subset, not noise
        pairs = [pairs[i] for i in sorted(pick)]
    pair_tvd: dict[str, float] = {}
    for a_name, b_name in pairs:
        ra, sa, ka = coded[a_name]
        rb, sb, kb = coded[b_name]
        pair_tvd[f"{a_name} × {b_name}"] = _tvd(ra * kb + rb, sa * kb + sb, ka * kb)
    names, real_x = _numeric_matrix(real, schema)
    _, synth_x = _numeric_matrix(synthetic, schema)
    corr_diff = float("nan")
    if len(names) >= 2:
        diff = np.abs(_corr(real_x) - _corr(synth_x))
        corr_diff = float(diff[np.triu_indices(len(names), 1)].mean())
    mean_col = float(np.mean([c["tvd"] for c in columns.values()]))
    mean_pair = float(np.mean(list(pair_tvd.values()))) if pair_tvd else mean_col
    return {
        "score": 1.0 - (mean_col + mean_pair) / 2.0,
        "mean_column_tvd": mean_col,
        "mean_pair_tvd": mean_pair,
        "mean_correlation_difference": corr_diff,
        "columns": columns,
        "pairs": pair_tvd,
        "pairs_evaluated": len(pair_tvd),
    }
