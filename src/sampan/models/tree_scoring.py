"""A horizontal GBDT model as plain threshold trees: scores and per-feature path contributions.

Why: the trained model is stored as bin edges + split bins (`sampan.horizontal.gbdt.gbdt_model_payload`);
scoring, reason codes, the exported format and ONNX all want ordinary trees, "x[f] <= threshold goes
left, a missing x[f] goes the split's missing direction". A split at bin b of feature f with sorted
interior edges e sends a row left iff (number of edges < x) <= b, i.e. iff x <= e[b]: the threshold is
e[b] exactly, so the conversion changes no decision. A missing (NaN) value falls in the last bin (past
every edge) unless the model records its own direction for it (``missing_left`` per split node).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

__all__ = ["ThresholdTree", "TreeEnsemble"]

_FEW_ROWS = 16  # up to this many rows, walk each row's paths in Python (no per-node numpy overhead)


@dataclass(frozen=True)
class ThresholdTree:
    """One tree in array form; node 0 is the root, ``feature[i] < 0`` marks a leaf."""

    feature: np.ndarray       # int64, -1 at leaves
    threshold: np.ndarray     # float64: x <= threshold goes left
    missing_left: np.ndarray  # bool: where a missing value goes
    left: np.ndarray          # int64 child ids, -1 at leaves
    right: np.ndarray
    value: np.ndarray         # leaf values (shrunk); 0 at split nodes
    node_value: np.ndarray    # the value each node would have as a leaf (path contributions)

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature.tolist(), "threshold": self.threshold.tolist(),
                "missing_left": self.missing_left.tolist(), "left": self.left.tolist(),
                "right": self.right.tolist(), "value": self.value.tolist(), "node_value": self.node_value.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ThresholdTree:
        return cls(np.asarray(d["feature"], dtype=np.int64), np.asarray(d["threshold"], dtype=np.float64),
                   np.asarray(d["missing_left"], dtype=bool), np.asarray(d["left"], dtype=np.int64),
                   np.asarray(d["right"], dtype=np.int64), np.asarray(d["value"], dtype=np.float64),
                   np.asarray(d["node_value"], dtype=np.float64))


@dataclass(frozen=True)
class TreeEnsemble:
    """Boosted trees: logit = base_score + sum of the trees' leaf values."""

    base_score: float
    n_features: int
    trees: tuple[ThresholdTree, ...]

    @classmethod
    def from_payload(cls, model: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> TreeEnsemble:
        """Convert a registered horizontal GBDT (bin edges + split bins) into threshold trees."""
        counts = np.asarray(arrays["edge_counts"], dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        flat = np.asarray(arrays["edges"], dtype=np.float64)
        splits: dict[tuple[int, int], list[Any]] = {(int(s[0]), int(s[1])): list(s[2:]) for s in model["splits"]}
        trees = []
        for t, spec in enumerate(model["trees"]):
            left = np.asarray(spec["left"], dtype=np.int64)
            size = len(left)
            feature = np.full(size, -1, dtype=np.int64)
            threshold = np.zeros(size)
            missing = np.zeros(size, dtype=bool)
            explicit = spec.get("missing_left")
            for node in np.flatnonzero(left >= 0):
                f, b, *rest = splits[(t, int(node))]
                edges = flat[bounds[f]:bounds[f + 1]]
                feature[node] = int(f)
                threshold[node] = edges[int(b)] if int(b) < len(edges) else np.inf
                if rest:  # the split's own learned direction for missing values
                    missing[node] = bool(rest[0])
                elif explicit is not None:
                    missing[node] = bool(explicit[node])
                else:  # NaN falls past every edge: left only when the split keeps the last bin left
                    missing[node] = int(b) >= len(edges)
            value = np.asarray(spec["value"], dtype=np.float64)
            trees.append(ThresholdTree(feature, threshold, missing, left, np.asarray(spec["right"], dtype=np.int64),
                                       np.where(left < 0, value, 0.0),
                                       np.asarray(spec.get("node_value", spec["value"]), dtype=np.float64)))
        return cls(float(model["base_score"]), int(model.get("n_features", len(counts))), tuple(trees))

    @cached_property
    def _lists(self) -> list[tuple[list[int], list[float], list[bool], list[int], list[int], list[float], list[float]]]:
        """Each tree as Python lists: a few rows walk their paths faster in Python than node by node in numpy."""
        return [(t.feature.tolist(), t.threshold.tolist(), t.missing_left.tolist(), t.left.tolist(), t.right.tolist(),
                 t.value.tolist(), t.node_value.tolist()) for t in self.trees]

    def _walk_rows(self, X: np.ndarray, contributions: np.ndarray | None) -> np.ndarray:
        """`_walk` for a few rows (an HTTP request's): one path per row and tree, same decisions and sums."""
        raw = np.full(len(X), self.base_score)
        for i, row in enumerate(X.tolist()):
            total = self.base_score
            for feature, threshold, missing_left, left, right, value, node_value in self._lists:
                node = 0
                while left[node] >= 0:
                    x = row[feature[node]]
                    child = left[node] if (missing_left[node] if x != x else x <= threshold[node]) else right[node]
                    if contributions is not None:
                        contributions[i, feature[node]] += node_value[child] - node_value[node]
                    node = child
                total += value[node]
            raw[i] = total
        return raw

    def _walk(self, X: np.ndarray, contributions: np.ndarray | None) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"gbdt model has {self.n_features} features, the rows have shape {X.shape}")
        if len(X) <= _FEW_ROWS:
            return self._walk_rows(X, contributions)
        raw = np.full(len(X), self.base_score)
        missing = np.isnan(X)
        for tree in self.trees:
            node = np.zeros(len(X), dtype=np.int64)
            for nd in range(len(tree.left)):  # children always follow their parent: one pass in id order
                if tree.left[nd] < 0:
                    continue
                at = np.flatnonzero(node == nd)
                if not at.size:
                    continue
                f = tree.feature[nd]
                go_left = np.where(missing[at, f], tree.missing_left[nd], X[at, f] <= tree.threshold[nd])
                child = np.where(go_left, tree.left[nd], tree.right[nd])
                node[at] = child
                if contributions is not None:
                    contributions[at, f] += tree.node_value[child] - tree.node_value[nd]
            raw += tree.value[node]
        return raw

    def logits(self, X: np.ndarray) -> np.ndarray:
        return self._walk(X, None)

    def logits_and_contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and (n, n_features) Saabas contributions; logit = bias + row sum, bias = base + root values."""
        contributions = np.zeros((len(X), self.n_features))
        return self._walk(X, contributions), contributions

    @property
    def bias(self) -> float:
        """The part of every logit no feature explains: base score plus each tree's root value."""
        return self.base_score + float(sum(t.node_value[0] for t in self.trees))
