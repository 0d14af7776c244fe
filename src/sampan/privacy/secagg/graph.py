"""The public neighbour graph of SecAgg+: its choice (degree, Harary construction) and the checks on it.

Why apart: the coordinator draws the graph and every party checks it before it shares a secret; a graph
that is irregular or disconnected would let one unmasking reveal partial sums (review R7-1).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def choose_neighbours(parties: int, threshold: float, expected_dropout: float, target: float = 1e-4) -> int | None:
    """Smallest even degree k whose round fails with probability <= target under iid dropouts.

    A round fails if some party keeps fewer than t = ceil(threshold·k) live neighbours, or if the
    survivors' graph splits (k/2 consecutive ring neighbours all drop); a union bound over parties is
    used. None (the complete graph) when no k < n - 1 meets the target.
    """
    from scipy.stats import binom

    if parties <= 3:
        return None
    start = max(2, 2 * math.ceil(math.log2(parties) / 2))  # even, about log2(n): Bell et al.'s O(log n)
    for k in range(start, parties - 1, 2):
        t = math.ceil(threshold * k - 1e-9)
        p_short = float(binom.cdf(t - 1, k, 1.0 - expected_dropout))
        p_split = expected_dropout ** (k // 2) if expected_dropout > 0 else 0.0
        if parties * (p_short + p_split) <= target:
            return k
    return None


def harary_graph(parties: Sequence[str], k: int | None, rng: np.random.Generator) -> dict[str, set[str]]:
    """Neighbours of each party: the k-regular Harary graph on a random ring order, or complete.

    Public; the coordinator draws it (from the run seed, so a resumed run draws the same graph).
    """
    names = sorted(parties)
    n = len(names)
    if k is None or k >= n - 1:
        return {p: set(names) - {p} for p in names}
    order = [names[i] for i in rng.permutation(n)]
    graph: dict[str, set[str]] = {p: set() for p in names}
    for i, p in enumerate(order):
        for step in range(1, k // 2 + 1):
            q = order[(i + step) % n]
            graph[p].add(q)
            graph[q].add(p)
    return graph


def _connected(nodes: set[str], graph: Mapping[str, set[str]]) -> bool:
    """The coordinator's own check before consistency (parties check for themselves with `_spans`)."""
    if not nodes:
        return True
    start = next(iter(nodes))
    seen, stack = {start}, [start]
    while stack:
        for q in graph[stack.pop()] & nodes:
            if q not in seen:
                seen.add(q)
                stack.append(q)
    return seen == nodes


def _spans(nodes: set[str], graph: Mapping[str, Sequence[str]]) -> bool:
    """A party's check: `nodes` form one connected component of `graph` restricted to them. If not, the masks
    of each component cancel inside it, and unmasking would reveal each component's sum."""
    if not nodes or not nodes <= set(graph):
        return False
    start = min(nodes)
    seen, stack = {start}, [start]
    while stack:
        for q in graph[stack.pop()]:
            if q in nodes and q not in seen:
                seen.add(q)
                stack.append(q)
    return seen == nodes


def _graph_digest(graph: Mapping[str, Sequence[str]]) -> str:
    return hashlib.sha256(repr(sorted((str(p), sorted(str(q) for q in graph[p])) for p in graph)).encode()).hexdigest()


def _check_graph(graph: Mapping[str, Sequence[str]], me: str, holders: Sequence[str]) -> str | None:
    """Why the neighbour graph the coordinator sent is unusable (None if fine): it must be symmetric, regular
    (every party holds shares of exactly k others) and connected, with this party's neighbours its share
    holders. Regularity is what makes a majority threshold t > k/2 mean a majority of the survivors: the
    revealers of any unmasking then number more than |U3|/2, so two attempts cannot be unmasked by disjoint
    revealers. Connectivity: in a graph of several components each component's masks cancel inside it, so
    one unmasking would reveal every component's sum, and re-drawn components over the same U3 would
    isolate single inputs (two triangles of six parties, four times: review R7-1)."""
    if me not in graph or sorted(graph[me]) != sorted(holders):
        return "its neighbours in the graph are not its share holders"
    k = len(holders)
    for p, neighbours in graph.items():
        if len(set(neighbours)) != k or p in neighbours:
            return f"party {p!r} has {len(set(neighbours))} neighbours, not {k} (the graph is not regular)"
        if any(q not in graph or p not in graph[q] for q in neighbours):
            return f"the graph is not symmetric at party {p!r}"
    if not _spans(set(graph), graph):
        return "the graph is disconnected (each component's sum would be unmasked on its own)"
    return None


def _graph_meta(value: Any) -> dict[str, list[str]] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(v, (list, tuple)) for v in value.values()):
        raise ValueError("the neighbour graph must map each party to a list of neighbours")
    return {str(p): [str(q) for q in v] for p, v in value.items()}
