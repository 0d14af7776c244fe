"""Histogram gradient-boosted trees (logistic loss), written once for pooled, horizontal and vertical use.

The learner never touches feature values: it sees *binned* features through per-node gradient and
hessian histograms, and asks for row partitions when it splits. Where those come from is the caller's
business — a local matrix (pooled), a sum over banks (horizontal), or masked histograms from partners
(vertical). That is why `boost` is a generator: it yields requests and receives their answers, so a
protocol can serve them across party boundaries while the learner keeps its state.

Requests (yielded) and answers (sent back):

* `HistRequest(nodes)` -> {node_id: {owner: (G, H)}} flat per-owner histograms (bins of all the owner's
  features, concatenated in `FeatureSlot.offset` order);
* `SplitRequest(splits)` -> {node_id: bool mask over that node's rows, True = goes left};
* `RouteRequest(tree, rows)` -> {owner: bool matrix (len(rows), n_owner_nodes)} the direction at every
  node of `tree` the owner holds, for validation or scoring rows.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit

__all__ = [
    "GBDTParams", "FeatureSlot", "Tree", "GBDTModel", "HistRequest", "SplitRequest", "RouteRequest",
    "quantile_bin_edges", "apply_bins", "best_splits", "boost", "histogram", "make_slots", "EarlyStopping",
]


@dataclass(frozen=True)
class GBDTParams:
    n_trees: int = 100
    max_depth: int = 4
    learning_rate: float = 0.1
    n_bins: int = 32
    l2: float = 1.0
    min_child_weight: float = 1.0
    min_split_gain: float = 0.0
    early_stopping_rounds: int = 10

    def __post_init__(self) -> None:
        for name in ("n_trees", "max_depth", "early_stopping_rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"GBDT: {name} must be >= 1, got {getattr(self, name)}")
        if not 2 <= self.n_bins <= 256:
            raise ValueError(f"GBDT: n_bins must be in [2, 256], got {self.n_bins}")
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"GBDT: learning_rate must be in (0, 1], got {self.learning_rate}")
        if self.l2 < 0 or self.min_child_weight < 0:
            raise ValueError("GBDT: l2 and min_child_weight must be >= 0")


@dataclass(frozen=True)
class FeatureSlot:
    """One feature as the learner sees it: who holds it, its bins, where it sits in the owner's histogram."""

    owner: str
    index: int          # the feature's position among its owner's features
    name: str
    n_bins: int
    offset: int


def quantile_bin_edges(x: np.ndarray, n_bins: int) -> np.ndarray:
    """Interior cut points at the column's quantiles (duplicates removed): bin b is edges[b-1] < x <= edges[b]."""
    x = np.asarray(x, dtype=np.float64)
    qs = np.quantile(x, np.linspace(0, 1, n_bins + 1)[1:-1]) if len(x) else np.array([])
    return np.unique(qs)


def apply_bins(X: np.ndarray, edges: list[np.ndarray]) -> np.ndarray:
    """Bin index of every value (uint8): the number of edges strictly below it."""
    out = np.empty(X.shape, dtype=np.uint8)
    for j, e in enumerate(edges):
        out[:, j] = np.searchsorted(e, X[:, j], side="left")
    return out


def make_slots(owner: str, names: list[str], edges: list[np.ndarray]) -> list[FeatureSlot]:
    slots, offset = [], 0
    for j, (name, e) in enumerate(zip(names, edges, strict=True)):
        slots.append(FeatureSlot(owner, j, name, len(e) + 1, offset))
        offset += len(e) + 1
    return slots


def flat_index(bins: np.ndarray, slots: list[FeatureSlot]) -> np.ndarray:
    """bins + each feature's offset, as one int64 matrix: computed once, gathered per node."""
    offsets = np.array([s.offset for s in slots], dtype=np.int64)
    return bins.astype(np.int64) + offsets


def histogram(bins: np.ndarray, slots: list[FeatureSlot], rows: np.ndarray, g: np.ndarray,
              h: np.ndarray, *, index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flat G and H histograms of the given rows over all of one owner's features (one bincount each).

    Pass `index` (from `flat_index`) to skip re-offsetting the bins at every node.
    """
    total = slots[-1].offset + slots[-1].n_bins if slots else 0
    idx = (index[rows] if index is not None else flat_index(bins[rows], slots)).ravel()
    reps = len(slots)
    G = np.bincount(idx, weights=np.repeat(g[rows], reps), minlength=total)
    H = np.bincount(idx, weights=np.repeat(h[rows], reps), minlength=total)
    return G, H


@dataclass
class _Candidate:
    gain: float
    owner: str
    feature: int
    bin: int
    G_left: float
    H_left: float


_GATHER: dict[tuple[tuple[int, int], ...], tuple[np.ndarray, np.ndarray]] = {}


def _gather(slots: list[FeatureSlot]) -> tuple[np.ndarray, np.ndarray]:
    """Index matrix (features x max bins) into a flat histogram, and the mask of real bins (cached)."""
    key = tuple((s.offset, s.n_bins) for s in slots)
    if key not in _GATHER:
        width = max((s.n_bins for s in slots), default=1)
        idx = np.zeros((len(slots), width), dtype=np.int64)
        valid = np.zeros((len(slots), width), dtype=bool)
        for k, s_ in enumerate(slots):
            idx[k, :s_.n_bins] = s_.offset + np.arange(s_.n_bins)
            valid[k, :s_.n_bins - 1] = True  # a cut after bin b; the last bin has no cut
        _GATHER[key] = (idx, valid)
    return _GATHER[key]


def best_splits(hists: Mapping[str, tuple[np.ndarray, np.ndarray]], slots: Mapping[str, list[FeatureSlot]],
                params: GBDTParams) -> _Candidate | None:
    """The highest-gain split over every owner's features (ties: first owner, feature, bin).

    Vectorised per owner: histograms gathered into a (features x bins) matrix, cumulative sums along
    bins give every left child at once.
    """
    best: _Candidate | None = None
    lam, mcw = params.l2, params.min_child_weight
    for owner in sorted(hists):
        if not slots[owner]:
            continue
        G, H = hists[owner]
        idx, valid = _gather(slots[owner])
        g_mat, h_mat = G[idx], H[idx]
        width = idx.shape[1]
        real = np.arange(width)[None, :] < np.array([s.n_bins for s in slots[owner]])[:, None]
        g_mat, h_mat = np.where(real, g_mat, 0.0), np.where(real, h_mat, 0.0)
        GL, HL = np.cumsum(g_mat, axis=1), np.cumsum(h_mat, axis=1)
        Gt, Ht = GL[:, -1:], HL[:, -1:]
        GR, HR = Gt - GL, Ht - HL
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = 0.5 * (GL ** 2 / (HL + lam) + GR ** 2 / (HR + lam) - Gt ** 2 / (Ht + lam)) - params.min_split_gain
        gain = np.where(valid & (HL >= mcw) & (HR >= mcw), gain, -np.inf)
        flat = int(np.argmax(gain))
        k, b = divmod(flat, width)
        if np.isfinite(gain[k, b]) and gain[k, b] > 0 and (best is None or gain[k, b] > best.gain + 1e-12):
            best = _Candidate(float(gain[k, b]), owner, slots[owner][k].index, b, float(GL[k, b]), float(HL[k, b]))
    return best


@dataclass
class Tree:
    """Array form. A split node says who holds it; its threshold bin is stored only by that owner."""

    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    owner: list[str] = field(default_factory=list)     # "" for leaves
    value: list[float] = field(default_factory=list)   # leaf values (already shrunk)
    default_left: list[bool] = field(default_factory=list)  # where rows unknown to the owner go
    node_value: list[float] = field(default_factory=list)   # the value each node would have as a leaf

    def add(self) -> int:
        self.left.append(-1)
        self.right.append(-1)
        self.owner.append("")
        self.value.append(0.0)
        self.default_left.append(True)
        self.node_value.append(0.0)
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
                "node_value": [float(v) for v in self.node_value]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Tree:
        return cls(list(d["left"]), list(d["right"]), list(d["owner"]), [float(v) for v in d["value"]],
                   [bool(v) for v in d["default_left"]], [float(v) for v in d.get("node_value", d["value"])])

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


@dataclass
class GBDTModel:
    """The label holder's view: tree shapes, owners and leaf values, plus the base score."""

    base_score: float
    trees: list[Tree]
    params: GBDTParams
    best_iteration: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class HistRequest:
    nodes: list[tuple[int, np.ndarray]]       # (node id, row indices)
    g: np.ndarray
    h: np.ndarray
    tree_index: int = 0


@dataclass
class SplitRequest:
    splits: list[tuple[int, np.ndarray, str, int, int]]  # (node id, rows, owner, feature, bin)
    tree_index: int = 0


@dataclass
class RouteRequest:
    tree: Tree
    tree_index: int
    rows: np.ndarray
    validation: bool


Answer = Any


GRID = float(1 << 32)


def grid_gradients(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logistic-loss gradients and hessians on a 2^-32 grid.

    On the grid, any float64 sum of up to 2^20 rows is exact, so a histogram summed in floating point
    (pooled, horizontal, the bank's own features) and one summed in Z_2^64 (a partner's, in the vertical
    protocol) are bit-identical whatever the row order: every driver grows the same trees, with no
    near-tie split decided by rounding.
    """
    g = np.rint((p - y) * GRID) / GRID
    h = np.maximum(np.rint(p * (1 - p) * GRID), 1.0) / GRID
    return g, h


def boost(params: GBDTParams, y: np.ndarray, slots: Mapping[str, list[FeatureSlot]], *,
          y_val: np.ndarray | None = None) -> Generator[Any, Answer, GBDTModel]:
    """Grow trees level by level; yields requests (see module docstring), returns the model.

    Per level, histograms are requested only for the smaller child of each split; the larger one is
    the parent's minus it (the subtraction trick); none for children at max_depth (leaves, never read): at
    most 2^(max_depth-1) node histograms per tree. Early stopping watches validation log loss.
    """
    y = np.asarray(y, dtype=np.float64)
    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    base = float(np.log(rate / (1 - rate)))
    raw = np.full(len(y), base)
    raw_val = np.full(len(y_val), base) if y_val is not None else None
    model = GBDTModel(base, [], params)
    stopper = EarlyStopping(params.early_stopping_rounds)
    for t in range(params.n_trees):
        g, h = grid_gradients(expit(raw), y)
        tree = Tree()
        root = tree.add()
        all_rows = np.arange(len(y))
        level: list[tuple[int, np.ndarray, dict]] = []
        hists = yield HistRequest([(root, all_rows)], g, h, t)
        level = [(root, all_rows, hists[root])]
        for depth in range(params.max_depth + 1):
            splits: list[tuple[int, np.ndarray, dict, Any]] = []
            leaves: list[tuple[int, np.ndarray, dict, Any]] = []
            for node, rows, hist in level:
                cand = best_splits(hist, slots, params) if depth < params.max_depth else None
                (splits if cand is not None else leaves).append((node, rows, hist, cand))
            for node, rows, _hist, _ in leaves:
                G, H = g[rows].sum(), h[rows].sum()
                tree.value[node] = tree.node_value[node] = -params.learning_rate * G / (H + params.l2)
                raw[rows] += tree.value[node]  # training rows' leaves are known from the partitions
            if not splits:
                break
            masks = yield SplitRequest([(node, rows, c.owner, c.feature, c.bin) for node, rows, _, c in splits], t)
            nxt, small_requests, pending = [], [], []
            for node, rows, hist, cand in splits:
                tree.node_value[node] = -params.learning_rate * g[rows].sum() / (h[rows].sum() + params.l2)
                left_mask = masks[node]
                lrows, rrows = rows[left_mask], rows[~left_mask]
                ln, rn = tree.add(), tree.add()
                tree.left[node], tree.right[node], tree.owner[node] = ln, rn, cand.owner
                # By hessian mass, not row count, so the horizontal learner (which sees only sums) agrees.
                h_left, h_right = cand.H_left, h[rows].sum() - cand.H_left
                tree.default_left[node] = h_left >= h_right
                small, large = ((ln, lrows), (rn, rrows)) if h_left <= h_right else ((rn, rrows), (ln, lrows))
                small_requests.append(small)
                pending.append((hist, small, large))
            if depth + 1 >= params.max_depth:  # the children are leaves: their histograms would never be read,
                # so none is requested (a vertical partner's release it would charge for nothing, review R12-VER-7a)
                level = [(node, node_rows, {}) for _, small, large in pending for node, node_rows in (small, large)]
                continue
            small_hists = yield HistRequest(small_requests, g, h, t)
            for hist, (sn, srows), (bn, brows) in pending:
                sh = small_hists[sn]
                big = {o: (hist[o][0] - sh[o][0], hist[o][1] - sh[o][1]) for o in hist}
                nxt += [(sn, srows, sh), (bn, brows, big)]
            level = nxt
        model.trees.append(tree)
        record = {"tree": t + 1, "train_logloss": _logloss(y, raw)}
        stop = False
        if y_val is not None and raw_val is not None:
            route_val = yield RouteRequest(tree, t, np.arange(len(y_val)), validation=True)
            raw_val += tree.predict(route_val, len(y_val))
            record["val_logloss"] = _logloss(y_val, raw_val)
            stop = stopper.update(record["val_logloss"], t + 1)
        model.history.append(record)
        if stop:
            break
    model.best_iteration = stopper.best_iteration if y_val is not None else len(model.trees)
    model.trees = model.trees[:model.best_iteration]
    return model


@dataclass
class EarlyStopping:
    """Validation log-loss watcher shared by every GBDT driver: best tree count, stop after `patience`."""

    patience: int
    best_loss: float = np.inf
    best_iteration: int = 0
    since: int = 0

    def update(self, loss: float, n_trees: int) -> bool:
        """Record the loss after `n_trees` trees; True when training should stop."""
        if loss < self.best_loss - 1e-7:
            self.best_loss, self.best_iteration, self.since = loss, n_trees, 0
        else:
            self.since += 1
        return self.since >= self.patience


def _logloss(y: np.ndarray, raw: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0.0, raw) - y * raw))
