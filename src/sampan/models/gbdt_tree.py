"""Binned features and the tree structure shared by every GBDT driver (`sampan.models.gbdt` learns them).

Why apart: binning (quantile edges, the missing bin), routing a split (`goes_left`), the array form of a
tree and its gain importance are what a party needs to *use* a model (score, explain, save/load); the
learner's search and boosting loop stay in `sampan.models.gbdt`, which re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FeatureSlot", "quantile_bin_edges", "apply_bins", "make_slots", "goes_left", "flat_index", "Tree",
           "gain_importance", "named_importance"]

@dataclass(frozen=True)
class FeatureSlot:
    """One feature as the learner sees it: who holds it, its bins, where it sits in the owner's histogram."""

    owner: str
    index: int          # the feature's position among its owner's features
    name: str
    n_bins: int
    offset: int
    missing: bool = False  # the last bin holds the missing (NaN) values

    @property
    def value_bins(self) -> int:
        """Bins of observed values (the missing bin, if any, follows them)."""
        return self.n_bins - 1 if self.missing else self.n_bins


def quantile_bin_edges(x: np.ndarray, n_bins: int) -> np.ndarray:
    """Interior cut points at the observed values' quantiles (NaN ignored, duplicates removed): bin b is
    edges[b-1] < x <= edges[b]."""
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    qs = np.quantile(x, np.linspace(0, 1, n_bins + 1)[1:-1]) if len(x) else np.array([])
    return np.unique(qs)


def apply_bins(X: np.ndarray, edges: list[np.ndarray], *, missing: bool = False) -> np.ndarray:
    """Bin index of every value: the number of edges strictly below it.

    With `missing`, NaN gets its feature's missing bin, len(edges) + 1 (after every value bin); without,
    NaN lands in the last value bin (the behaviour of models made before missing bins). uint8 while every
    index fits, else uint16.
    """
    top = max((len(e) + (1 if missing else 0) for e in edges), default=0)
    out = np.empty(X.shape, dtype=np.uint8 if top <= 255 else np.uint16)
    for j, e in enumerate(edges):
        col = np.searchsorted(e, X[:, j], side="left")
        if missing:
            col = np.where(np.isnan(X[:, j]), len(e) + 1, col)
        out[:, j] = col
    return out


def make_slots(owner: str, names: list[str], edges: list[np.ndarray], *, missing: bool = False) -> list[FeatureSlot]:
    """Each feature's slot in its owner's flat histogram; `missing` adds each feature's missing bin."""
    slots, offset = [], 0
    extra = 2 if missing else 1
    for j, (name, e) in enumerate(zip(names, edges, strict=True)):
        slots.append(FeatureSlot(owner, j, name, len(e) + extra, offset, missing))
        offset += len(e) + extra
    return slots


def goes_left(column: np.ndarray, bin: int, missing_left: bool, value_bins: int) -> np.ndarray:
    """Rows going left at a split "bin <= `bin`": observed values by their bin, the missing bin (any index
    >= `value_bins`) by the split's learned direction."""
    left = np.asarray(column) <= bin
    return left | (np.asarray(column) >= value_bins) if missing_left else left


def flat_index(bins: np.ndarray, slots: list[FeatureSlot]) -> np.ndarray:
    """bins + each feature's offset, as one int64 matrix: computed once, gathered per node."""
    offsets = np.array([s.offset for s in slots], dtype=np.int64)
    return bins.astype(np.int64) + offsets


@dataclass
class Tree:
    """Array form. A split node says who holds it; its threshold bin is stored only by that owner."""

    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    owner: list[str] = field(default_factory=list)     # "" for leaves
    value: list[float] = field(default_factory=list)   # leaf values (already shrunk)
    default_left: list[bool] = field(default_factory=list)  # where rows unknown to the owner go
    node_value: list[float] = field(default_factory=list)   # the value each node would have as a leaf
    missing_left: list[bool] = field(default_factory=list)  # where the split feature's missing values go
    feature: list[int] = field(default_factory=list)        # split feature (index among its owner's), -1: leaf
    gain: list[float] = field(default_factory=list)         # split gain (feature importance), 0: leaf

    def add(self) -> int:
        self.left.append(-1)
        self.right.append(-1)
        self.owner.append("")
        self.value.append(0.0)
        self.default_left.append(True)
        self.node_value.append(0.0)
        self.missing_left.append(False)
        self.feature.append(-1)
        self.gain.append(0.0)
        return len(self.left) - 1

    def owned_by(self, owner: str) -> list[int]:
        return [i for i, o in enumerate(self.owner) if o == owner]

    def predict(self, decisions: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """Leaf values given each owner's per-node directions (columns in `owned_by` order)."""
        cols = {o: {node: k for k, node in enumerate(self.owned_by(o))} for o in decisions}
        node = np.zeros(n, dtype=np.int64)
        out = np.zeros(n)
        active = np.ones(n, dtype=bool)
        while active.any():
            idx = np.flatnonzero(active)
            for nd in np.unique(node[idx]):
                at = idx[node[idx] == nd]
                if self.left[nd] < 0:
                    out[at] = self.value[nd]
                    active[at] = False
                    continue
                go_left = decisions[self.owner[nd]][at, cols[self.owner[nd]][nd]]
                node[at] = np.where(go_left, self.left[nd], self.right[nd])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"left": [int(v) for v in self.left], "right": [int(v) for v in self.right], "owner": list(self.owner),
                "value": [float(v) for v in self.value], "default_left": [bool(v) for v in self.default_left],
                "node_value": [float(v) for v in self.node_value],
                "missing_left": [bool(v) for v in self.missing_left], "feature": [int(v) for v in self.feature],
                "gain": [float(v) for v in self.gain]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Tree:
        """Trees saved before missing bins and importance load with missing values right and no gains."""
        n = len(d["left"])
        return cls(list(d["left"]), list(d["right"]), list(d["owner"]), [float(v) for v in d["value"]],
                   [bool(v) for v in d["default_left"]], [float(v) for v in d.get("node_value", d["value"])],
                   [bool(v) for v in d.get("missing_left", [False] * n)], [int(v) for v in d.get("feature", [-1] * n)],
                   [float(v) for v in d.get("gain", [0.0] * n)])

    def path_contributions(self, decisions: Mapping[str, np.ndarray], row: int) -> list[tuple[int, str, float]]:
        """(node, owner, value change) along one row's path: Saabas attribution of the tree's output."""
        cols = {o: {node: k for k, node in enumerate(self.owned_by(o))} for o in decisions}
        out, node = [], 0
        while self.left[node] >= 0:
            owner = self.owner[node]
            nxt = self.left[node] if decisions[owner][row, cols[owner][node]] else self.right[node]
            out.append((node, owner, self.node_value[nxt] - self.node_value[node]))
            node = nxt
        return out


def gain_importance(trees: Iterable[Tree]) -> dict[tuple[str, int], float]:
    """Gain importance: each (owner, feature)'s summed split gain over `trees`, normalised to sum to 1.

    Empty when no tree splits. Trees saved before gains were recorded count nothing."""
    total: dict[tuple[str, int], float] = {}
    for tree in trees:
        for node, owner in enumerate(tree.owner):
            if owner and tree.feature[node] >= 0:
                key = (owner, tree.feature[node])
                total[key] = total.get(key, 0.0) + max(tree.gain[node], 0.0)
    mass = sum(total.values())
    return {k: v / mass for k, v in sorted(total.items(), key=lambda kv: -kv[1])} if mass > 0 else {}


def named_importance(importance: Mapping[tuple[str, int], float],
                     names: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """`gain_importance` keyed by feature name (prefixed "owner: " when there are several owners),
    largest first; `names[owner]` lists that owner's feature names in index order."""
    several = len({o for o, _ in importance}) > 1
    out = {(f"{o}: " if several else "") + str(names[o][j]): v for (o, j), v in importance.items()}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
