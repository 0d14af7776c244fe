"""Horizontal GBDT for bank consortia: one tree learner over histogram sums across banks.

Every bank keeps its rows, labels and running scores; per node it sends only its gradient and hessian
histograms over shared bin edges (a missing bin per feature: NaN values of a `native` column), the coordinator
adds them (no secure aggregation exists for trees), chooses the split (with its learned missing-value
direction) and broadcasts it; each bank routes its own rows. Leaf values come from the summed histograms, so
without DP the model equals the pooled learner on the same bins.

What each role learns without DP. The coordinator: per-feature quantile cut points of each bank (to agree on
bin edges), each bank's row count and default count, every bank's own exact gradient/hessian histograms per
node, one validation log-loss sum per tree and bank, the splits and the leaf values. Each bank: the whole
model. Under `[privacy.gbdt]` (a `GBDTReleasePlan`, `sampan.horizontal.gbdt_privacy`) the coordinator sees
only noised, charged releases (the banks' mod, `sampan.privacy.gbdt_dp`): [rows, positives] once and at most
max_depth + 1 histogram releases per tree; edges come from public bounds and no validation loss leaves. The
demo (`sampan demo --model gbdt`) has no DP option and refuses `--epsilon` rather than run without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.special import expit

from sampan.core.seeds import derive_seed
from sampan.core.transport import PartyError, Transport
from sampan.data.table import PartyData
from sampan.horizontal.gbdt_checks import (
    GBDTRequestRefused,
    TreeShape,
    checked_edges,
    finite_number,
    sketch_bins,
    sketch_quantiles,
)
from sampan.horizontal.gbdt_payload import GBDT_KIND, gbdt_model_payload, predict_gbdt_payload, predict_horizontal
from sampan.horizontal.gbdt_privacy import GBDTReleasePlan
from sampan.models.gbdt import (
    EarlyStopping,
    FeatureSlot,
    GBDTModel,
    GBDTParams,
    Tree,
    best_splits,
    bin_matrix,
    goes_left,
    grid_gradients,
    level_histograms,
    make_slots,
    record_split,
    unit_params,
    weight_scale,
)
from sampan.privacy.gbdt_dp import BANK_BUDGET_REFUSAL
from sampan.wire import Message

__all__ = [
    "GBDT_KIND",
    "GBDT_VALIDATION_FRACTION",
    "validation_split",
    "HorizontalGBDTParty",
    "HorizontalGBDTResult",
    "gbdt_model_payload",
    "merge_edges",
    "predict_gbdt_payload",
    "predict_horizontal",
    "train_horizontal_gbdt",
]

GBDT_VALIDATION_FRACTION = 0.15  # of a bank's training rows, held out at the bank for early stopping


def validation_split(name: str, train: PartyData) -> tuple[PartyData, PartyData]:
    """A bank's (fit rows, early-stopping rows): a fixed split of its training rows, drawn at the bank."""
    return train.train_test_split(
        GBDT_VALIDATION_FRACTION, np.random.default_rng(derive_seed(0, "gbdt-validation", name))
    )


class _BankBudgetStop(Exception):
    """A bank refused a tree's release on its own budget: the run keeps the trees before it."""


class HorizontalGBDTParty:
    """One bank's handlers: edges sketch, histograms of its rows, routing, leaf updates."""

    def __init__(self, name: str, train: PartyData, val: PartyData | None = None, *,
                 max_bins: int | None = None) -> None:
        self.name, self.train, self.val = name, train, val
        self.max_bins = max_bins  # the job's announced n_bins: the most a sketch is answered at
        self.shape = TreeShape()  # node ids the coordinator's own requests created (`gbdt_checks`)

    def handlers(self) -> dict[str, Callable[[Message], Message]]:
        return {
            "hgb.sketch": self.sketch,
            "hgb.setup": self.setup,
            "hgb.hist": self.hist,
            "hgb.split": self.split,
            "hgb.leaves": self.leaves,
        }

    def sketch(self, msg: Message) -> Message:
        """Local quantile cut points per feature (not with ``counts_only``), the row count and the default count."""
        X = self.train.X
        y = self.train.y if self.train.y is not None else np.zeros(len(X))
        counts = {"n": len(X), "events": float(y.sum())}
        if msg.meta.get("counts_only"):
            return msg.reply("hgb.sketch", meta=counts)
        n_bins = sketch_bins(self.name, msg.meta.get("n_bins"), self.max_bins)  # review R13-HGB-3
        return msg.reply("hgb.sketch", {"quantiles": sketch_quantiles(X, n_bins)}, counts)

    def setup(self, msg: Message) -> Message:
        """Shared bin edges, base score and class weight: checked (finite, well-formed) before any row is binned."""
        d = self.train.X.shape[1]
        edges = checked_edges(self.name, msg.arrays.get("edges"), msg.arrays.get("counts"), d)
        pos_weight = finite_number(self.name, "pos_weight", msg.meta.get("pos_weight", 1.0), positive=True)
        base = finite_number(self.name, "base_score", msg.meta.get("base_score"))
        self.edges, self.pos_weight, self.shape = edges, pos_weight, TreeShape()
        # NaN: each feature's missing bin; uint8 built block by block, no float copy of the table (issue 15)
        self.bins = bin_matrix(self.train.X, self.edges, missing=True)
        self.slots = make_slots(self.name, list(self.train.feature_names), self.edges, missing=True)
        self.raw = np.full(len(self.train), base)
        assert self.train.y is not None, f"bank {self.name!r}: training rows carry no labels"
        self.y = self.train.y.astype(float)
        self.val_bins: np.ndarray | None
        self.val_raw: np.ndarray | None
        self.y_val: np.ndarray | None
        if self.val is not None and len(self.val):
            assert self.val.y is not None, f"bank {self.name!r}: validation rows carry no labels"
            self.val_bins, self.val_raw, self.y_val = (
                bin_matrix(self.val.X, self.edges, missing=True),
                np.full(len(self.val), base),
                self.val.y.astype(float),
            )
        else:
            self.val_bins, self.val_raw, self.y_val = None, None, None
        return msg.reply("hgb.ack")

    def hist(self, msg: Message) -> Message:
        """Histograms of this bank's rows in each requested node (new tree: fresh gradients, root only); with
        ``clip`` = [c_g, c_h] of gradients clipped to [-c_g, c_g] and hessians to [0, c_h] (bounded sensitivity,
        `sampan.privacy.gbdt_dp`); with ``totals`` only each node's G and H sums."""
        if not hasattr(self, "slots"):
            raise GBDTRequestRefused(f"bank {self.name!r} refuses hgb.hist before hgb.setup")
        if msg.meta.get("new_tree"):
            g, h = grid_gradients(expit(self.raw), self.y, self.pos_weight)  # |g| <= 1, h <= 1/4
            finite = np.isfinite(g) & np.isfinite(h)  # review R13-HGB-1: a non-finite row contributes 0, so no
            self.g, self.h = np.where(finite, g, 0.0), np.where(finite, h, 0.0)  # sum is NaN because a row is there
            self.node = np.zeros(len(self.y), dtype=np.int64)
            self.val_node = np.zeros(len(self.y_val), dtype=np.int64) if self.y_val is not None else None
            self.shape.start()
        nodes = [int(n) for n in np.asarray(msg.arrays.get("nodes", []), dtype=np.int64).ravel().tolist()]
        self.shape.check_nodes(self.name, nodes)
        g, h = self.g, self.h
        if "clip" in msg.meta:
            c_g, c_h = (float(c) for c in msg.meta["clip"])
            g, h = np.clip(g, -c_g, c_g), np.clip(h, 0.0, c_h)
        kept = None
        if msg.meta.get("features") is not None:  # a tree's feature subset: the other features' bins stay 0
            kept = np.zeros(self.slots[-1].offset + self.slots[-1].n_bins, dtype=bool)
            for j in msg.meta["features"]:
                kept[self.slots[j].offset : self.slots[j].offset + self.slots[j].n_bins] = True
        out = {}
        node_rows = [np.flatnonzero(self.node == node) for node in nodes]
        if msg.meta.get("totals"):
            for node, rows in zip(nodes, node_rows, strict=True):
                out[f"G:{node}"], out[f"H:{node}"] = np.array([g[rows].sum()]), np.array([h[rows].sum()])
            return msg.reply("hgb.hist", out)
        # every requested node in one pass over row blocks of the uint8 matrix (`sampan.models.gbdt_hist`)
        for node, (G, H) in zip(nodes, level_histograms(self.bins, self.slots, node_rows, g, h), strict=True):
            out[f"G:{node}"], out[f"H:{node}"] = (G, H) if kept is None else (np.where(kept, G, 0.0),
                                                                             np.where(kept, H, 0.0))
        return msg.reply("hgb.hist", out)

    def split(self, msg: Message) -> Message:
        """Route this bank's rows (and validation rows) through the new splits: [node, feature, bin, left, right,
        missing left] (a split without the last column sends missing values right). Every split is checked
        against the tree's public shape before any row moves (`gbdt_checks.TreeShape`)."""
        slots = getattr(self, "slots", [])
        for node, feature, b, left, right, missing in self.shape.check_splits(self.name, msg.arrays.get("splits"),
                                                                              slots):
            value_bins = slots[feature].value_bins
            for bins, where in ((self.bins, self.node), (self.val_bins, self.val_node)):
                if bins is None or where is None:
                    continue
                at = where == node
                go_left = goes_left(bins[:, feature], b, missing, value_bins)
                where[at & go_left], where[at & ~go_left] = left, right
        return msg.reply("hgb.ack")

    def leaves(self, msg: Message) -> Message:
        """Add the finished tree's leaf values (one finite value per node the coordinator created, checked before
        any row is read: review R13-HGB-5) and close the tree; report the validation log-loss sum (one number)."""
        values = self.shape.check_leaves(self.name, msg.arrays.get("values"))
        self.shape = TreeShape()  # the next request must start a new tree
        self.raw += values[self.node]
        out: dict[str, Any] = {"n_val": 0, "val_loss": 0.0}
        if self.val_raw is not None and self.val_node is not None and self.y_val is not None:
            self.val_raw += values[self.val_node]
            out = {
                "n_val": len(self.y_val),
                "val_loss": float(np.sum(np.logaddexp(0, self.val_raw) - self.y_val * self.val_raw)),
            }
        return msg.reply("hgb.leaves", meta=out)


def merge_edges(sketches: list[tuple[np.ndarray, int]]) -> list[np.ndarray]:
    """Shared cut points: each bank's quantiles averaged with row-count weights, then de-duplicated (a bank's NaN
    cut points, a column too sparse to sketch there, are left out of that column's average)."""
    q = np.stack([np.atleast_2d(np.asarray(qs, dtype=np.float64)) for qs, _ in sketches])
    present = np.isfinite(q)
    weights = np.where(present, np.array([float(n) for _, n in sketches])[:, None, None], 0.0)
    total = weights.sum(axis=0)
    avg = (np.where(present, q, 0.0) * weights).sum(axis=0) / np.where(total > 0, total, 1.0)
    return [np.unique(row[kept]) for row, kept in zip(avg, total > 0, strict=True)]


@dataclass
class HorizontalGBDTResult:
    model: GBDTModel
    edges: list[np.ndarray]
    thresholds: dict[tuple[int, int], tuple[int, int]]
    seconds: float
    budget_stop: str | None = None


def _totals(hist: tuple[np.ndarray, np.ndarray], slots: list[FeatureSlot], private: bool) -> tuple[float, float]:
    """A node's G and H sums: exact from its first feature's bins; under DP the mean over features of each
    feature's bin sums (independent noise per feature: d times less variance), H floored at 0, or the released
    totals themselves (a totals-only release)."""
    G, H = hist
    if len(G) == 1:
        return float(G[0]), max(float(H[0]), 0.0)
    if not private:
        return float(G[: slots[0].n_bins].sum()), float(H[: slots[0].n_bins].sum())
    g = np.mean([G[s.offset : s.offset + s.n_bins].sum() for s in slots])
    h = np.mean([H[s.offset : s.offset + s.n_bins].sum() for s in slots])
    return float(g), max(float(h), 0.0)


def train_horizontal_gbdt(
    transport: Transport,
    run_id: str,
    banks: list[str],
    params: GBDTParams,
    feature_names: list[str],
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
    privacy: GBDTReleasePlan | None = None,
) -> HorizontalGBDTResult:
    """Coordinator: agree on bins, then grow trees level by level on summed histograms. With ``privacy`` every
    bank release is noised at the bank and charged first (`sampan.horizontal.gbdt_privacy`): edges from public
    bounds, both children of a split requested (one release per level), totals only for the last level, leaf
    values from the noised sums, no early stopping (no validation loss leaves a bank)."""
    started = time.perf_counter()
    step = [0]

    def wave(
        kind: str, arrays: dict | None = None, meta: dict | None = None, to: list[str] | None = None
    ) -> list[Message]:
        step[0] += 1
        msgs = (Message(run_id, step[0], "coordinator", b, kind, arrays or {}, meta or {}) for b in (to or banks))
        return list(transport.exchange(msgs))

    if privacy is None:
        sk = wave("hgb.sketch", meta={"n_bins": params.n_bins})
        edges = merge_edges([(r.arrays["quantiles"], int(r.meta["n"])) for r in sk])
    else:
        privacy.charge(banks, "row and positive counts", counts=True, step=0)
        sk = wave("hgb.sketch", meta={"n_bins": params.n_bins, "dp": privacy.counts_request()})
        edges = privacy.edges
    n_total = max(sum(float(r.meta["n"]) for r in sk), 1.0)
    events = float(np.clip(sum(float(r.meta["events"]) for r in sk), 0.0, n_total))
    rate = float(np.clip(events / n_total, 1e-6, 1 - 1e-6))
    base = float(np.log(params.pos_weight * rate / (1 - rate)))  # the weighted logloss's constant (`base_score`)
    wave("hgb.setup", {"edges": np.concatenate(edges), "counts": np.array([len(e) for e in edges])},
         {"base_score": base, "pos_weight": params.pos_weight})
    slots = {"all": make_slots("all", feature_names, edges, missing=True)}
    unit, scale = unit_params(params), weight_scale(params.pos_weight)  # learner units: |g| <= 1, h <= 1/4
    if privacy is not None:  # children lighter than the noise are never chosen (public values only)
        floor = privacy.min_child_hessian(len(banks), privacy.released_features(len(feature_names)),
                                          max(len(e) for e in edges) + 2)
        unit = replace(unit, min_child_weight=max(unit.min_child_weight, floor))
    model = GBDTModel(base, [], params)
    thresholds: dict[tuple[int, int], tuple[int, int]] = {}
    stopper = EarlyStopping(params.early_stopping_rounds)
    budget_stop: str | None = None

    def summed(replies: list[Message], node: int) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.sum([r.arrays[f"G:{node}"] for r in replies], axis=0),
            np.sum([r.arrays[f"H:{node}"] for r in replies], axis=0),
        )

    def histograms(t: int, release: int, nodes: list[int], meta: dict[str, Any], totals: bool,
                   features: list[int] | None) -> list[Message]:
        if privacy is not None:
            privacy.charge(banks, f"histograms, tree {t + 1} release {release}", step=t + 1)
            meta = {**meta, "dp": privacy.request(totals=totals, features=features)}
        try:
            return wave("hgb.hist", {"nodes": np.array(nodes)}, meta)
        except PartyError as exc:  # review R13-HGB-2: a bank's own budget (all its runs) ran out first
            if exc.error_type != BANK_BUDGET_REFUSAL:
                raise
            raise _BankBudgetStop(f"bank {exc.party!r} refused tree {t + 1} (its own budget: {exc.error}): the "
                                  f"model keeps the {t} trees before it") from None

    def _grow(t: int) -> Tree:
        """Tree `t`, level by level (its splits routed at the banks; leaf values not yet sent)."""
        tree = Tree()
        root = tree.add()
        chosen = privacy.tree_features(t, len(feature_names)) if privacy is not None else None
        tree_slots = {"all": [slots["all"][j] for j in chosen]} if chosen is not None else slots
        replies = histograms(t, 1, [root], {"new_tree": True}, False, chosen)
        level = [(root, {"all": summed(replies, root)})]
        for depth in range(params.max_depth + 1):
            splits = []
            for node, hist in level:
                G, H = _totals(hist["all"], tree_slots["all"], privacy is not None)
                tree.node_value[node] = -params.learning_rate * G / (H + unit.l2) if H + unit.l2 > 0 else 0.0
                full = len(hist["all"][0]) > 1
                cand = best_splits(hist, tree_slots, unit) if depth < params.max_depth and full else None
                if cand is None:
                    tree.value[node] = tree.node_value[node]
                else:
                    splits.append((node, hist, cand, H))
            if not splits:
                break
            rows, pending, wanted = [], [], []
            for node, hist, cand, H in splits:
                ln, rn = tree.add(), tree.add()
                tree.left[node], tree.right[node], tree.owner[node] = ln, rn, "all"
                tree.default_left[node] = cand.H_left >= H - cand.H_left
                record_split(tree, node, cand, scale)  # feature, missing direction, gain (importance)
                thresholds[(t, node)] = (cand.feature, cand.bin)
                rows.append([node, cand.feature, cand.bin, ln, rn, int(cand.missing_left)])
                small = ln if cand.H_left <= H - cand.H_left else rn
                big = rn if small == ln else ln
                wanted += [small] if privacy is None else [small, big]  # DP: no subtraction (noise would add up)
                pending.append((hist, small, big))
            wave("hgb.split", {"splits": np.array(rows, dtype=np.int64)})
            replies = histograms(t, depth + 2, wanted, {}, depth + 1 == params.max_depth, chosen)
            nxt = []
            for hist, small, big in pending:
                sh = {"all": summed(replies, small)}
                if privacy is None:
                    bh = {"all": (hist["all"][0] - sh["all"][0], hist["all"][1] - sh["all"][1])}
                else:
                    bh = {"all": summed(replies, big)}
                nxt += [(small, sh), (big, bh)]
            level = nxt
        return tree

    for t in range(params.n_trees):
        if privacy is not None and (budget_stop := privacy.tree_fits(banks, t)) is not None:
            break
        try:
            tree = _grow(t)
        except _BankBudgetStop as refused:
            budget_stop = str(refused)
            break
        values = np.array(tree.value)
        model.trees.append(tree)
        replies = wave("hgb.leaves", {"values": values})
        n_val = sum(int(r.meta["n_val"]) for r in replies)
        record: dict[str, float] = {"tree": t + 1}
        stop = False
        if n_val:
            record["val_logloss"] = sum(float(r.meta["val_loss"]) for r in replies) / n_val
            stop = stopper.update(record["val_logloss"], t + 1)
        model.history.append(record)
        if progress:
            progress(record)
        if stop:
            break
    model.best_iteration = stopper.best_iteration or len(model.trees)
    model.trees = model.trees[: model.best_iteration]
    return HorizontalGBDTResult(model, edges, thresholds, time.perf_counter() - started, budget_stop)
