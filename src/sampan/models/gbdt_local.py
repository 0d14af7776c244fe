"""GBDT in one place: the plaintext provider that answers the learner's requests, `fit_local` and `predict_local`.

Why apart from `sampan.models.gbdt`: the federated drivers answer the same requests over messages; this is the
pooled (or single-party) reference they are tested against, and the local baseline a run reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sampan.models.gbdt import (
    Answer,
    FeatureSlot,
    GBDTModel,
    GBDTParams,
    HistRequest,
    RouteRequest,
    SplitRequest,
    Tree,
    boost,
    goes_left,
    level_histograms,
)

__all__ = ["LocalProvider", "fit_local", "predict_local"]


class LocalProvider:
    """Answers the learner's requests from binned matrices held in one place (pooled or per-party local)."""

    def __init__(self, bins: Mapping[str, np.ndarray], slots: Mapping[str, list[FeatureSlot]],
                 val_bins: Mapping[str, np.ndarray] | None = None) -> None:
        self.bins, self.slots, self.val_bins = dict(bins), dict(slots), dict(val_bins or {})
        self.thresholds: dict[tuple[int, int], tuple[int, int]] = {}  # (tree, node) -> (feature, bin)
        self.missing_left: dict[tuple[int, int], bool] = {}  # (tree, node) -> the missing bin goes left

    def answer(self, request: Any) -> Answer:
        if isinstance(request, HistRequest):
            node_rows = [r for _, r in request.nodes]
            per_owner = {o: level_histograms(b, self.slots[o], node_rows, request.g, request.h)
                         for o, b in self.bins.items()}
            return {node: {o: per_owner[o][k] for o in self.bins} for k, (node, _) in enumerate(request.nodes)}
        if isinstance(request, SplitRequest):
            out = {}
            for node, rows, owner, feature, b in request.splits:
                key = (request.tree_index, node)
                self.thresholds[key] = (feature, b)
                self.missing_left[key] = request.missing_left.get(node, False)
                out[node] = self._left(owner, key, self.bins[owner][rows, feature])
            return out
        if isinstance(request, RouteRequest):
            source = self.val_bins if request.validation else self.bins
            return self.route(request.tree, request.tree_index, source, request.rows)
        raise TypeError(f"unknown request {type(request).__name__}")

    def route(
        self, tree: Tree, tree_index: int, bins: Mapping[str, np.ndarray], rows: np.ndarray
    ) -> dict[str, np.ndarray]:
        out = {}
        for owner in bins:
            nodes = tree.owned_by(owner)
            m = np.zeros((len(rows), len(nodes)), dtype=bool)
            for k, node in enumerate(nodes):
                key = (tree_index, node)
                m[:, k] = self._left(owner, key, bins[owner][rows, self.thresholds[key][0]])
            out[owner] = m
        return out

    def _left(self, owner: str, key: tuple[int, int], column: np.ndarray) -> np.ndarray:
        feature, b = self.thresholds[key]
        return goes_left(column, b, self.missing_left.get(key, False), self.slots[owner][feature].value_bins)


def fit_local(params: GBDTParams, bins: Mapping[str, np.ndarray], slots: Mapping[str, list[FeatureSlot]],
              y: np.ndarray, *, val_bins: Mapping[str, np.ndarray] | None = None,
              y_val: np.ndarray | None = None) -> tuple[GBDTModel, LocalProvider]:
    """Plaintext boosting over binned matrices (the pooled reference of the vertical learner)."""
    provider = LocalProvider(bins, slots, val_bins)
    gen = boost(params, y, slots, y_val=y_val)
    answer = None
    try:
        while True:
            request = gen.send(answer)
            answer = provider.answer(request)
    except StopIteration as stop:
        return stop.value, provider


def predict_local(model: GBDTModel, provider: LocalProvider, bins: Mapping[str, np.ndarray]) -> np.ndarray:
    """Raw scores (log-odds) of rows binned like the training rows."""
    n = len(next(iter(bins.values())))
    raw = np.full(n, model.base_score)
    for t, tree in enumerate(model.trees):
        raw += tree.predict(provider.route(tree, t, bins, np.arange(n)), n)
    return raw
