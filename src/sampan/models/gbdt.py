"""Histogram gradient-boosted trees (logistic loss), written once for pooled, horizontal and vertical use.

The learner never touches feature values: it sees *binned* features through per-node gradient and
hessian histograms, and asks for row partitions when it splits. Where those come from is the caller's
business — a local matrix (pooled), a sum over banks (horizontal), or masked histograms from partners
(vertical). That is why `boost` is a generator: it yields requests and receives their answers, so a
protocol can serve them across party boundaries while the learner keeps its state.

Requests (yielded) and answers (sent back):

* `HistRequest(nodes)` -> {node_id: {owner: (G, H)}} flat per-owner histograms (bins of all the owner's
  features, concatenated in `FeatureSlot.offset` order);
* `SplitRequest(splits)` -> {node_id: bool mask over that node's rows, True = goes left}; a node in its
  `missing_left` sends the feature's missing bin left (`goes_left`);
* `RouteRequest(tree, rows)` -> {owner: bool matrix (len(rows), n_owner_nodes)} the direction at every
  node of `tree` the owner holds, for validation or scoring rows.

Missing values (LightGBM/XGBoost style). A slot made with `missing=True` has one extra bin, its last,
holding the rows whose value is NaN (`apply_bins(..., missing=True)`). Every split search tries the
missing bin on both sides of each cut (and "every value left, missing right") and keeps the better; the
direction is stored per split (`Tree.missing_left`) and routing applies it (`goes_left`). One record still
sits in exactly one bin per feature, so histogram sensitivities are unchanged by the extra bin.

Class weights. `GBDTParams.pos_weight` multiplies the logloss gradient and hessian of positive rows. The
learner works with the weights divided by their largest (so |g| <= 1, h <= 1/4 per record, the bound
every DP sensitivity here rests on) and divides l2, min_child_weight and min_split_gain by the same
factor: leaf values and split choices are exactly those of the unscaled weighted objective.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.special import expit

from sampan.models.gbdt_hist import bin_matrix, node_histograms
from sampan.models.gbdt_tree import (
    FeatureSlot,
    Tree,
    apply_bins,
    flat_index,
    gain_importance,
    goes_left,
    make_slots,
    named_importance,
    quantile_bin_edges,
)

__all__ = [
    "GBDTParams", "FeatureSlot", "Tree", "GBDTModel", "HistRequest", "SplitRequest", "RouteRequest",
    "quantile_bin_edges", "apply_bins", "best_splits", "boost", "histogram", "make_slots", "EarlyStopping",
    "goes_left", "gain_importance", "named_importance", "weight_scale", "unit_params", "grid_gradients", "base_score",
    "flat_index", "record_split", "level_histograms", "bin_matrix",
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
    pos_weight: float = 1.0  # weight of positive (default) rows in the logloss: class weights for rare defaults

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
        if not (np.isfinite(self.pos_weight) and self.pos_weight > 0):
            raise ValueError(f"GBDT: pos_weight must be a finite number > 0, got {self.pos_weight}")


def histogram(bins: np.ndarray, slots: list[FeatureSlot], rows: np.ndarray, g: np.ndarray,
              h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat G and H histograms of the given rows over all of one owner's features (`level_histograms`, one node)."""
    return level_histograms(bins, slots, [rows], g, h)[0]


def level_histograms(bins: np.ndarray, slots: list[FeatureSlot], nodes: list[np.ndarray], g: np.ndarray,
                     h: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(G, H) of each node's rows over one owner's binned (uint8) matrix, all nodes in one pass of row blocks
    (`sampan.models.gbdt_hist`): memory beside the matrix is one block's, never n x features floats."""
    sums = node_histograms(bins, [s.n_bins for s in slots], nodes, np.stack([g, h]))
    return [(sums[k, 0], sums[k, 1]) for k in range(len(nodes))]


@dataclass
class _Candidate:
    gain: float
    owner: str
    feature: int
    bin: int
    G_left: float        # the left child's sums, the missing bin included when it goes left
    H_left: float
    missing_left: bool = False


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
    bins give every left child at once. A feature's missing bin is tried on each side of every cut (on
    equal gain, right); "all values left, missing right" is a cut too. Where the node has no missing mass
    the direction is the heavier child's (where unseen missing values most plausibly belong).
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
        value_bins = np.array([s.value_bins for s in slots[owner]])[:, None]
        miss_col = np.array([s.n_bins - 1 if s.missing else width for s in slots[owner]])[:, None]
        at_missing = np.arange(width)[None, :] == miss_col
        Gm = np.where(at_missing, g_mat, 0.0).sum(axis=1, keepdims=True)
        Hm = np.where(at_missing, h_mat, 0.0).sum(axis=1, keepdims=True)
        real = np.arange(width)[None, :] < value_bins
        g_mat, h_mat = np.where(real, g_mat, 0.0), np.where(real, h_mat, 0.0)
        GL, HL = np.cumsum(g_mat, axis=1), np.cumsum(h_mat, axis=1)
        Gt, Ht = GL[:, -1:] + Gm, HL[:, -1:] + Hm
        gain_r = _gain(GL, HL, Gt, Ht, lam, mcw, params.min_split_gain, valid)
        valid_l = valid & (np.arange(width)[None, :] < value_bins - 1)  # "missing left, nothing right" is no split
        gain_l = _gain(GL + Gm, HL + Hm, Gt, Ht, lam, mcw, params.min_split_gain, valid_l)
        left = np.where(Hm != 0, gain_l > gain_r, (HL + Hm >= Ht - HL - Hm) & valid_l)
        gain = np.where(left, gain_l, gain_r)
        flat = int(np.argmax(gain))
        k, b = divmod(flat, width)
        if np.isfinite(gain[k, b]) and gain[k, b] > 0 and (best is None or gain[k, b] > best.gain + 1e-12):
            ml = bool(left[k, b])
            best = _Candidate(float(gain[k, b]), owner, slots[owner][k].index, b,
                              float(GL[k, b] + (Gm[k, 0] if ml else 0.0)), float(HL[k, b] + (Hm[k, 0] if ml else 0.0)),
                              ml)
    return best


def record_split(tree: Tree, node: int, cand: _Candidate, scale: float = 1.0) -> None:
    """Store what every driver keeps of a chosen split in the tree: its feature, its missing-value direction and
    its gain (times `scale`, `weight_scale(pos_weight)`, so gains are in the weighted objective's units)."""
    tree.missing_left[node], tree.feature[node], tree.gain[node] = cand.missing_left, cand.feature, cand.gain * scale


def _gain(GL: np.ndarray, HL: np.ndarray, Gt: np.ndarray, Ht: np.ndarray, lam: float, mcw: float,
          min_split_gain: float, valid: np.ndarray) -> np.ndarray:
    """Split gain of every (feature, cut) given its left sums; -inf where the cut is not allowed."""
    GR, HR = Gt - GL, Ht - HL
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = 0.5 * (GL ** 2 / (HL + lam) + GR ** 2 / (HR + lam) - Gt ** 2 / (Ht + lam)) - min_split_gain
    return np.where(valid & (HL >= mcw) & (HR >= mcw), gain, -np.inf)


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
    missing_left: dict[int, bool] = field(default_factory=dict)  # node id -> its missing bin goes left


@dataclass
class RouteRequest:
    tree: Tree
    tree_index: int
    rows: np.ndarray
    validation: bool


Answer = Any


GRID = float(1 << 32)


def weight_scale(pos_weight: float) -> float:
    """The largest class weight: the learner divides every weight (and l2, min_child_weight,
    min_split_gain) by it, so per-record |g| <= 1 and h <= 1/4 whatever `pos_weight`."""
    return max(float(pos_weight), 1.0)


def unit_params(params: GBDTParams) -> GBDTParams:
    """`params` in the learner's units (weights divided by `weight_scale`): the same trees and leaves."""
    s = weight_scale(params.pos_weight)
    if s == 1.0:
        return params
    return replace(params, l2=params.l2 / s, min_child_weight=params.min_child_weight / s,
                   min_split_gain=params.min_split_gain / s)


def grid_gradients(p: np.ndarray, y: np.ndarray, pos_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Logistic-loss gradients and hessians on a 2^-32 grid, positives weighted by `pos_weight` and every
    weight divided by `weight_scale` (|g| <= 1, h <= 1/4 per record).

    On the grid, any float64 sum of up to 2^20 rows is exact, so a histogram summed in floating point
    (pooled, horizontal, the bank's own features) and one summed in Z_2^64 (a partner's, in the vertical
    protocol) are bit-identical whatever the row order: every driver grows the same trees, with no
    near-tie split decided by rounding.
    """
    if pos_weight == 1.0:
        g = np.rint((p - y) * GRID) / GRID
        h = np.maximum(np.rint(p * (1 - p) * GRID), 1.0) / GRID
        return g, h
    w = np.where(y > 0.5, pos_weight, 1.0) / weight_scale(pos_weight)
    g = np.rint(w * (p - y) * GRID) / GRID
    h = np.maximum(np.rint(w * p * (1 - p) * GRID), 1.0) / GRID
    return g, h


def base_score(y: np.ndarray, pos_weight: float = 1.0) -> float:
    """The constant log-odds minimising the (weighted) logloss: log(pos_weight * rate / (1 - rate))."""
    rate = float(np.clip(np.mean(y), 1e-6, 1 - 1e-6))
    return float(np.log(pos_weight * rate / (1 - rate)))


def boost(params: GBDTParams, y: np.ndarray, slots: Mapping[str, list[FeatureSlot]], *,
          y_val: np.ndarray | None = None) -> Generator[Any, Answer, GBDTModel]:
    """Grow trees level by level; yields requests (see module docstring), returns the model.

    Per level, histograms are requested only for the smaller child of each split; the larger one is
    the parent's minus it (the subtraction trick); none for children at max_depth (leaves, never read): at
    most 2^(max_depth-1) node histograms per tree. Early stopping watches validation log loss.
    """
    y = np.asarray(y, dtype=np.float64)
    pw, scale, unit = params.pos_weight, weight_scale(params.pos_weight), unit_params(params)
    base = base_score(y, pw)
    raw = np.full(len(y), base)
    raw_val = np.full(len(y_val), base) if y_val is not None else None
    model = GBDTModel(base, [], params)
    stopper = EarlyStopping(params.early_stopping_rounds)
    for t in range(params.n_trees):
        g, h = grid_gradients(expit(raw), y, pw)
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
                cand = best_splits(hist, slots, unit) if depth < params.max_depth else None
                (splits if cand is not None else leaves).append((node, rows, hist, cand))
            for node, rows, _hist, _ in leaves:
                G, H = g[rows].sum(), h[rows].sum()
                tree.value[node] = tree.node_value[node] = -params.learning_rate * G / (H + unit.l2)
                raw[rows] += tree.value[node]  # training rows' leaves are known from the partitions
            if not splits:
                break
            masks = yield SplitRequest([(node, rows, c.owner, c.feature, c.bin) for node, rows, _, c in splits], t,
                                       {node: c.missing_left for node, _, _, c in splits})
            nxt, small_requests, pending = [], [], []
            for node, rows, hist, cand in splits:
                tree.node_value[node] = -params.learning_rate * g[rows].sum() / (h[rows].sum() + unit.l2)
                record_split(tree, node, cand, scale)
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
        record = {"tree": t + 1, "train_logloss": _logloss(y, raw, pw)}
        stop = False
        if y_val is not None and raw_val is not None:
            route_val = yield RouteRequest(tree, t, np.arange(len(y_val)), validation=True)
            raw_val += tree.predict(route_val, len(y_val))
            record["val_logloss"] = _logloss(y_val, raw_val, pw)
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


def _logloss(y: np.ndarray, raw: np.ndarray, pos_weight: float = 1.0) -> float:
    """Mean logloss, positives weighted by `pos_weight` (the objective early stopping watches)."""
    loss = np.logaddexp(0.0, raw) - y * raw
    if pos_weight == 1.0:
        return float(np.mean(loss))
    w = np.where(y > 0.5, pos_weight, 1.0)
    return float(np.sum(w * loss) / np.sum(w))
