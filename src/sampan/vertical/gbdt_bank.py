"""Vertical GBDT, the bank's side of a step: its run state and the folding of opened replies into answers.

Why apart from `sampan.vertical.gbdt`: that module runs the message handlers of both roles; this one is the
pure bookkeeping the bank does between them (decode the partners' masked sums against the dealer's, check
each feature's totals, take partitions and routing bits), kept small enough to read on its own.

What each role learns here: nothing beyond `sampan.vertical.gbdt` (REVEALS/VIEWS in `gbdt_views`) — the bank
decodes per-bin sums of partner features (noised when `hist_noise` is set), the exact partitions at partner
splits and the partners' routing bits; nothing is sent from here.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.models.gbdt import FeatureSlot, GBDTModel, HistRequest, RouteRequest, SplitRequest, level_histograms
from sampan.vertical.gbdt_scoring import split_directions
from sampan.vertical.histograms import check_feature_totals, decode_sums, reported_sigma

__all__ = ["BankState", "collect_answers"]


@dataclass
class BankState:
    """The label holder's state for one vertical GBDT run: the learner, its pending request, its own bins."""

    gen: Generator[Any, Any, GBDTModel]
    request: Any
    bins: np.ndarray
    bins_val: np.ndarray
    edges: list[np.ndarray]
    slots: dict[str, list[FeatureSlot]]
    partners: list[str]
    dealer_seed: bytes
    sigma: dict[str, np.ndarray]
    n_train: int
    thresholds: dict[tuple[int, int], tuple[int, int, bool]] = field(default_factory=dict)
    counter: int = 0
    pending: dict[str, Any] = field(default_factory=dict)
    model: GBDTModel | None = None
    masked_tree: int = -1
    hist_noise: float = 0.0


def collect_answers(bank: str, st: BankState, inbox: dict[tuple[str, str], np.ndarray],
                    arrays: Mapping[str, np.ndarray]) -> Any:
    """The learner's answer to its last request, from the partners' opened replies and the dealer's sums."""
    req = st.request
    if isinstance(req, HistRequest):
        out: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        # the noise each partner says (sealed) it added, checked against the agreed level: the tolerance
        # of the totals check comes from the partner, never from the coordinator
        sigmas = {p: reported_sigma({"sigma": inbox.pop((p, "sigma"), np.array([np.nan]))}, st.hist_noise,
                                    bank=bank, partner=p) for p in st.partners}
        sums = {p: decode_sums(inbox.pop((p, "s")) - arrays[f"dealer:{p}"]) for p in st.partners}
        for k, (node, rows) in enumerate(req.nodes):
            expected = np.array([req.g[rows].sum(), req.h[rows].sum()])
            for p in st.partners:  # the dealer's integrity, as far as the bank can see it
                check_feature_totals(sums[p][k], [s.n_bins for s in st.slots[p]], expected, sigmas[p],
                                     bank=bank, partner=p, node=f"{req.tree_index}/{node}")
        own_hists = level_histograms(st.bins, st.slots[bank], [rows for _, rows in req.nodes], req.g, req.h)
        for k, (node, _rows) in enumerate(req.nodes):
            out[node] = {bank: own_hists[k]}
            for p in st.partners:
                out[node][p] = (sums[p][k, 0], sums[p][k, 1])
        return out
    if isinstance(req, SplitRequest):
        masks = {}
        for node, rows, owner, f, b in req.splits:
            if owner == bank:
                key = (req.tree_index, node)
                st.thresholds[key] = (f, b, req.missing_left.get(node, False))
                masks[node] = split_directions(st.bins, st.thresholds, st.edges, [key], rows=rows)[:, 0]
            else:
                masks[node] = inbox.pop((owner, f"left:{node}")).astype(bool)
        return masks
    if isinstance(req, RouteRequest):
        bins = st.bins_val if req.validation else st.bins
        own = [(req.tree_index, n) for n in req.tree.owned_by(bank)]
        decisions = {bank: split_directions(bins, st.thresholds, st.edges, own, rows=req.rows)}
        for p in st.partners:
            decisions[p] = inbox.pop((p, "route"), np.zeros((len(req.rows), 0), dtype=np.uint8)).astype(bool)
        return decisions
    raise TypeError(f"unexpected request {type(req).__name__}")
