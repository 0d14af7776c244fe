"""Which pairs of columns to model: a spanning tree chosen under DP, as in MST (McKenna et al. 2021).

Each pair's score is how far its true 2-way histogram is from a public baseline table built from
earlier noisy releases: ``|| X_ab - B_ab ||_1``. With a label, B_ab = n sum_y P(y) P(a|y) P(b|y), so
the tree captures what the label does not already explain (as in tree-augmented naive Bayes); without
one, B_ab = n p_a p_b^T as in MST. A record moves one cell of X_ab by one and B_ab does not depend on
the records, so each score has sensitivity 1. Kruskal's algorithm picks one edge per round among those
joining two components, with
the exponential mechanism (Gumbel-max: argmax of eps/2 * score + Gumbel noise, which is exactly the
EM distribution for a non-monotone score of sensitivity 1).

Federated: each bank chooses a tree on its own data (charged to its own budget); the trees are
combined by vote, and the vote count is post-processing of DP outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np

__all__ = ["baseline_tables", "combine_trees", "em_spanning_tree", "independence_scores"]

Edge = tuple[str, str]


def baseline_tables(conditionals: Mapping[str, np.ndarray], p_label: np.ndarray,
                    n_hat: float) -> dict[Edge, np.ndarray]:
    """Public baseline of every pair: n sum_y P(y) P(a|y) P(b|y), from (L, bins) conditionals."""
    names = list(conditionals)
    return {(a, b): n_hat * np.einsum("l,la,lb->ab", p_label, conditionals[a], conditionals[b])
            for a, b in combinations(names, 2)}


def independence_scores(bins: Mapping[str, np.ndarray], sizes: Mapping[str, int],
                        baselines: Mapping[Edge, np.ndarray], scale: float = 1.0) -> dict[Edge, float]:
    """L1 distance of every pair's 2-way counts from ``scale`` times its baseline (sensitivity 1 each)."""
    scores: dict[Edge, float] = {}
    for (a, b), expected in baselines.items():
        ka, kb = sizes[a], sizes[b]
        counts = np.bincount(bins[a] * kb + bins[b], minlength=ka * kb).reshape(ka, kb)
        scores[(a, b)] = float(np.abs(counts - scale * expected).sum())
    return scores


class _Components:
    """Union-find over column names."""

    def __init__(self, names: Sequence[str]) -> None:
        self.parent = {n: n for n in names}

    def find(self, x: str) -> str:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def em_spanning_tree(names: Sequence[str], scores: Mapping[Edge, float], epsilon: float,
                     rng: np.random.Generator) -> list[Edge]:
    """Kruskal with one exponential-mechanism choice (pure ``epsilon``) per round; len(names)-1 rounds."""
    comps = _Components(names)
    edges: list[Edge] = []
    candidates = list(scores)
    for _ in range(len(names) - 1):
        candidates = [e for e in candidates if comps.find(e[0]) != comps.find(e[1])]
        q = np.array([scores[e] for e in candidates], dtype=np.float64)
        pick = int(np.argmax(epsilon / 2.0 * q + rng.gumbel(size=q.size)))
        a, b = candidates[pick]
        edges.append((a, b))
        comps.union(a, b)
    return edges


def combine_trees(names: Sequence[str], trees: Sequence[Sequence[Edge]], rng: np.random.Generator) -> list[Edge]:
    """Maximum spanning forest over how many parties chose each edge (ties at random); zero-vote edges never."""
    votes: dict[Edge, int] = {}
    for tree in trees:
        for a, b in tree:
            key = (a, b) if names.index(a) < names.index(b) else (b, a)
            votes[key] = votes.get(key, 0) + 1
    order = sorted(votes, key=lambda e: (-votes[e], rng.random()))
    comps = _Components(names)
    chosen: list[Edge] = []
    for a, b in order:
        if comps.find(a) != comps.find(b):
            chosen.append((a, b))
            comps.union(a, b)
    return chosen
