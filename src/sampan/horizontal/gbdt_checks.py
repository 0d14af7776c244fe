"""What a bank checks in the coordinator's horizontal GBDT requests, before it touches a row.

Why (reviews R13-HGB-1, -3, -5): the coordinator chooses every number the tree handlers use. A leaf vector
shorter than the node ids made `values[node_of_row]` fail exactly when a routed node held a row (an uncharged
membership oracle, DP or not); a NaN leaf value, base score or class weight made every gradient NaN, and noise
added to NaN stays NaN, so a noised bin was NaN exactly when a row sat in it; a quantile sketch at any bin count
returned every order statistic. So every check here reads the request and the tree shape the coordinator
itself created (how many nodes its splits named), never the rows: whether a request is answered or refused
says nothing about the data. Floats must be finite; node ids must be the ones the coordinator's own splits
created, in the order a tree grows them; a sketch is capped at the job's bin count, `MAX_SKETCH_BINS`, and at
one cut per `MIN_ROWS_PER_QUANTILE` present values of a column (coarser cut points interpolated to the
requested grid).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from sampan.errors import ProtocolError
from sampan.models.gbdt import FeatureSlot

__all__ = ["GBDTRequestRefused", "MAX_SKETCH_BINS", "MIN_ROWS_PER_QUANTILE", "TreeShape", "checked_edges",
           "finite_number", "sketch_bins", "sketch_quantiles"]

MAX_SKETCH_BINS = 256  # as `GBDTParams.n_bins`
MIN_ROWS_PER_QUANTILE = 10  # present values of a column per cut point of its sketch


class GBDTRequestRefused(ProtocolError, ValueError):
    """A tree request the bank refuses from its content alone (names the bank and the field)."""


def finite_number(party: str, field: str, value: Any, *, positive: bool = False) -> float:
    """A coordinator-supplied number: a real int or float (never a string such as "nan"), finite (> 0 if asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
            positive and value <= 0):
        raise GBDTRequestRefused(f"bank {party!r} refuses {field}={value!r}: a finite number"
                                 f"{' > 0' if positive else ''} is needed")
    return float(value)


def checked_edges(party: str, flat: Any, counts: Any, features: int) -> list[np.ndarray]:
    """The setup's bin edges: one strictly increasing, finite vector per feature (at most `MAX_SKETCH_BINS` - 1)."""
    flat, counts = np.asarray(flat), np.asarray(counts)
    if counts.ndim != 1 or len(counts) != features or counts.dtype.kind not in "iu" or np.any(counts < 0) or np.any(
            counts >= MAX_SKETCH_BINS) or flat.ndim != 1 or len(flat) != int(counts.sum()):
        raise GBDTRequestRefused(f"bank {party!r} refuses hgb.setup edges: {features} per-feature counts (each below "
                                 f"{MAX_SKETCH_BINS}) summing to the edge vector's length are needed")
    if flat.dtype.kind not in "iuf" or not np.all(np.isfinite(flat)):
        raise GBDTRequestRefused(f"bank {party!r} refuses hgb.setup edges: finite numbers are needed")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    edges = [flat[bounds[j]:bounds[j + 1]].astype(np.float64) for j in range(features)]
    if any(np.any(np.diff(e) <= 0) for e in edges):
        raise GBDTRequestRefused(f"bank {party!r} refuses hgb.setup edges: each feature's must increase strictly")
    return edges


def sketch_bins(party: str, value: Any, announced: int | None) -> int:
    """The sketch's bin count: an int in [2, the job's announced n_bins (else `MAX_SKETCH_BINS`)]."""
    cap = min(int(announced), MAX_SKETCH_BINS) if announced else MAX_SKETCH_BINS
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= cap:
        raise GBDTRequestRefused(f"bank {party!r} refuses hgb.sketch n_bins={value!r}: an int in [2, {cap}] is "
                                 "needed (the job's bin count)")
    return value


def sketch_quantiles(X: np.ndarray, n_bins: int) -> np.ndarray:
    """Per feature, its cut points at the n_bins - 1 interior probabilities k / n_bins. Computed from at most one
    empirical quantile per `MIN_ROWS_PER_QUANTILE` present values (linearly interpolated onto the requested grid),
    so however many bins are asked for the sketch is a function of that many order statistics; a column with
    fewer than 2 × `MIN_ROWS_PER_QUANTILE` present values sends NaN (no cut point of its own)."""
    wanted = np.linspace(0, 1, n_bins + 1)[1:-1]
    out = np.full((X.shape[1], len(wanted)), np.nan)
    for j in range(X.shape[1]):
        column = X[:, j][np.isfinite(X[:, j])]
        levels = min(n_bins, len(column) // MIN_ROWS_PER_QUANTILE)
        if levels < 2:
            continue
        coarse = np.linspace(0, 1, levels + 1)[1:-1]
        out[j] = np.interp(wanted, coarse, np.quantile(column, coarse)) if levels < n_bins else np.quantile(
            column, wanted)
    return out


class TreeShape:
    """The node ids of the tree being grown, as the coordinator's own requests created them (public state)."""

    def __init__(self) -> None:
        self.nodes = 0  # 0: no tree started (no `new_tree` histogram request yet)
        self.split: set[int] = set()

    def start(self) -> None:
        self.nodes, self.split = 1, set()

    def check_nodes(self, party: str, nodes: Sequence[int]) -> None:
        """A histogram request names distinct nodes of the current tree. Repeats are refused with or without DP
        (review R15-GBDT-3): the level pass gathers each named node's rows, so a node named K times cost K times
        its rows and partials, and a request of a few KB could exhaust the bank's memory."""
        if not self.nodes or any(not 0 <= n < self.nodes for n in nodes):
            raise GBDTRequestRefused(f"bank {party!r} refuses histograms of nodes {list(nodes)[:20]}: the tree has "
                                     f"{self.nodes} nodes")
        if len(set(nodes)) != len(nodes):
            raise GBDTRequestRefused(f"bank {party!r} refuses hgb.hist: field 'nodes' names a node more than once "
                                     "(each node's histogram is asked for once)")

    def check_splits(self, party: str, rows: Any, slots: Sequence[FeatureSlot]) -> list[tuple[int, int, int, int, int,
                                                                                              bool]]:
        """Each split [node, feature, bin, left, right(, missing left)]: an unsplit node of the tree, a feature and
        bin of the shared edges, children numbered next as a tree grows them (left, then right). All rows are
        checked before any is applied (nothing half-routed)."""
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] not in (5, 6) or rows.dtype.kind not in "iu":
            raise GBDTRequestRefused(f"bank {party!r} refuses hgb.split: integer rows [node, feature, bin, left, "
                                     "right, missing left] are needed")
        if not self.nodes:
            raise GBDTRequestRefused(f"bank {party!r} refuses hgb.split before a tree started")
        out, nodes, split = [], self.nodes, set(self.split)
        for node, feature, b, left, right, *missing in rows.tolist():
            if not 0 <= node < nodes or node in split or (left, right) != (nodes, nodes + 1) or not (
                    0 <= feature < len(slots)) or not 0 <= b < slots[feature].value_bins or (
                    missing and missing[0] not in (0, 1)):
                raise GBDTRequestRefused(f"bank {party!r} refuses split {[node, feature, b, left, right, *missing]}: "
                                         f"an unsplit node below {nodes}, a feature and bin of the shared edges and "
                                         f"children {nodes}, {nodes + 1} are needed")
            split.add(node)
            nodes += 2
            out.append((node, feature, b, left, right, bool(missing and missing[0])))
        self.nodes, self.split = nodes, split
        return out

    def check_leaves(self, party: str, values: Any) -> np.ndarray:
        """A finished tree's leaf values: one finite number per node of the tree (its length is public)."""
        values = np.asarray(values)
        if not self.nodes or values.shape != (self.nodes,) or values.dtype.kind not in "iuf" or not np.all(
                np.isfinite(values)):
            raise GBDTRequestRefused(f"bank {party!r} refuses hgb.leaves: {self.nodes} finite values (one per node of "
                                     "the tree) are needed")
        return values.astype(np.float64)
