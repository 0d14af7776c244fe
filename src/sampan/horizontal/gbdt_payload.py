"""The horizontal GBDT model as arrays and JSON, and its scores: what a run registers and any bank scores with.

Why a module of its own: scoring needs no training code (a bank scores its applicants with the registered model,
`sampan.horizontal.party` evaluates tree payloads), and the trainer (`sampan.horizontal.gbdt`) stays short.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from sampan.models.gbdt import Tree, bin_matrix, gain_importance, goes_left, named_importance

if TYPE_CHECKING:
    from sampan.horizontal.gbdt import HorizontalGBDTResult

__all__ = ["GBDT_KIND", "gbdt_model_payload", "predict_gbdt_payload", "predict_horizontal"]

GBDT_KIND = "gbdt"  # model.kind, and the "kind" of a registered horizontal GBDT model


def _raw_scores(base: float, trees: list[Tree], edges: list[np.ndarray],
                splits: Mapping[tuple[int, int], tuple[int, int]], missing_bins: bool, X: np.ndarray) -> np.ndarray:
    """Raw scores of rows: each split "bin <= b" of its feature, a missing value by the split's learned direction
    (models made before missing bins: NaN in the last value bin, as they were trained)."""
    bins = bin_matrix(X, edges, missing=missing_bins)  # block by block: uint8, column-major
    raw = np.full(len(X), base)
    for t, tree in enumerate(trees):
        nodes = tree.owned_by("all")
        columns = []
        for n in nodes:
            f, b = splits[(t, n)]
            columns.append(goes_left(bins[:, f], b, missing_bins and tree.missing_left[n], len(edges[f]) + 1))
        dec = np.stack(columns, axis=1) if nodes else np.zeros((len(X), 0), dtype=bool)
        raw += tree.predict({"all": dec}, len(X))
    return raw


def predict_horizontal(result: HorizontalGBDTResult, X: np.ndarray) -> np.ndarray:
    """Raw scores of rows (any bank can score its own applicants with the shared model)."""
    return _raw_scores(result.model.base_score, result.model.trees, result.edges, result.thresholds, True, X)


def gbdt_model_payload(
    result: HorizontalGBDTResult, feature_names: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The model as arrays (bin edges, flat, with per-feature counts) and a JSON model config: trees, splits
    [tree, node, feature, bin, missing left], a missing bin per feature, and the gain importance per feature."""
    arrays = {
        "edges": np.concatenate(result.edges) if result.edges else np.zeros(0),
        "edge_counts": np.array([len(e) for e in result.edges], dtype=np.int64),
    }
    trees = result.model.trees
    model = {
        "kind": GBDT_KIND,
        "n_features": len(feature_names),
        "base_score": float(result.model.base_score),
        "trees": [t.to_dict() for t in trees],
        "splits": [[t, node, int(f), int(b), bool(trees[t].missing_left[node])]
                   for (t, node), (f, b) in sorted(result.thresholds.items()) if t < len(trees)],
        "missing_bins": True,
        "importance": named_importance(gain_importance(trees), {"all": list(feature_names)}),
    }
    return arrays, model


def predict_gbdt_payload(model: Mapping[str, Any], arrays: Mapping[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Probabilities of rows under a `gbdt_model_payload` model (any bank scores its own rows with it)."""
    counts = np.asarray(arrays["edge_counts"], dtype=np.int64)
    if len(counts) != X.shape[1]:
        raise ValueError(f"gbdt model has {len(counts)} features, the rows have {X.shape[1]}")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    flat = np.asarray(arrays["edges"], dtype=np.float64)
    edges = [flat[bounds[j] : bounds[j + 1]] for j in range(len(counts))]
    splits = {(int(s[0]), int(s[1])): (int(s[2]), int(s[3])) for s in model["splits"]}
    trees = [Tree.from_dict(spec) for spec in model["trees"]]
    base = float(model["base_score"])
    _check_payload(base, flat, trees, splits)
    raw = _raw_scores(base, trees, edges, splits, bool(model.get("missing_bins")), X)
    return 1.0 / (1.0 + np.exp(-raw))


def _check_payload(base: float, edges: np.ndarray, trees: list[Tree], splits: Mapping[tuple[int, int], Any]) -> None:
    """A payload is checked from its content alone before any row is scored (review R13-HGB-1/5's class): finite
    numbers, and every split node's children numbered after it (no cycle, no index past the tree), so whether scoring
    fails or loops never depends on which rows reach which node."""
    if not (np.isfinite(base) and np.all(np.isfinite(edges))):
        raise ValueError("gbdt model: base score and bin edges must be finite")
    for t, tree in enumerate(trees):
        size = len(tree.left)
        if not np.all(np.isfinite(np.asarray(tree.value, dtype=np.float64))):
            raise ValueError(f"gbdt model: tree {t} has a non-finite leaf value")
        for node, (left, right) in enumerate(zip(tree.left, tree.right, strict=True)):
            if (left, right) != (-1, -1) and not (node < left < size and node < right < size
                                                  and (t, node) in splits):
                raise ValueError(f"gbdt model: tree {t} node {node} has children {left}, {right} (each split's "
                                 "children come after it, within the tree, with its split listed)")
