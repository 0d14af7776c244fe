"""Drawing rows from a fitted `SynthModel`, optionally with evidence on the label and one feature.

Unconditional rows are ancestral samples: label, then features in tree order. With evidence on a
feature ``c`` (used by fixed target marginals), the label is drawn from P(y | c) and the feature tree
is re-rooted at ``c``: edges on the path from the old root to ``c`` are reversed using the edge joint
P(parent, child | y) = P(parent | y) P(child | parent', y), every other edge keeps its conditional.
That draws exactly from the model's P(rest | y, c), so fixing c's marginal changes nothing else
about the model beyond what conditioning implies (the I-projection onto the target).

Only model tables are read here; the sampler has no access to records.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import numpy as np

from sampan.synth.encoders import CategoryGroups
from sampan.synth.model import SynthModel
from sampan.synth.table import Table

__all__ = ["decode_rows", "sample_bins"]


def _draw(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category per row of a (n, k) probability matrix (inverse CDF)."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0]) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), probs.shape[1] - 1)


def _neighbours(model: SynthModel) -> dict[str, list[str]]:
    adj: dict[str, list[str]] = {f: [] for f in model.order}
    for child, parent in model.parents.items():
        if parent is not None:
            adj[child].append(parent)
            adj[parent].append(child)
    return adj


def _order_from(model: SynthModel, root: str) -> list[tuple[str, str | None]]:
    """(node, new parent) in BFS order of root's component, then the other components as fitted."""
    adj = _neighbours(model)
    seen, queue = {root}, deque([root])
    out: list[tuple[str, str | None]] = [(root, None)]
    while queue:
        u = queue.popleft()
        for v in adj[u]:
            if v not in seen:
                seen.add(v)
                out.append((v, u))
                queue.append(v)
    out += [(f, model.parents[f]) for f in model.order if f not in seen]
    return out


def sample_bins(
    model: SynthModel,
    n: int,
    rng: np.random.Generator,
    label: np.ndarray | None = None,
    evidence: tuple[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Label codes and feature bins for ``n`` rows; ``label`` and/or ``evidence`` (feature, bins) fix values."""
    marg = model.node_marginals() if evidence is not None else {}
    if label is None:
        if evidence is None:
            label = _draw(np.broadcast_to(model.p_label, (n, model.p_label.size)), rng)
        else:
            c, bins = evidence
            posterior = model.p_label[None, :] * marg[c][:, bins].T  # (n, L) ∝ P(y) P(c | y)
            label = _draw(posterior + 1e-300, rng)
    label = np.asarray(label, dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    if evidence is None:
        plan = [(f, model.parents[f]) for f in model.order]
    else:
        c, bins = evidence
        out[c] = np.asarray(bins, dtype=np.int64)
        plan = _order_from(model, c)[1:]
    for node, parent in plan:
        cond = model.conditionals[node]
        if parent is None:
            probs = cond[label, 0, :]
        elif model.parents[node] == parent:  # original direction
            probs = cond[label, model.coarsen[node][out[parent]], :]  # type: ignore[index]
        else:  # reversed edge: node was the parent of `parent`
            child_cond = model.conditionals[parent]  # (L, groups of node, bins of parent)
            groups = model.coarsen[parent]
            assert groups is not None
            # P(node=b | parent=x, y) ∝ P(node=b | y) P(parent=x | group(b), y)
            prior = marg[node][label, :]  # (n, bins of node)
            like = child_cond[label[:, None], groups[None, :], out[parent][:, None]]
            probs = prior * like
        out[node] = _draw(probs + 1e-300, rng)
    return label, out


def decode_rows(model: SynthModel, label: np.ndarray, bins: Mapping[str, np.ndarray],
                rng: np.random.Generator, fixed_codes: Mapping[str, np.ndarray] | None = None) -> Table:
    """Values in schema order; ``fixed_codes`` force categorical columns to given category codes."""
    fixed_codes = fixed_codes or {}
    table: Table = {}
    for spec in model.schema.columns:
        if spec.name == model.schema.label:
            cats = np.asarray(spec.categories, dtype=object)
            table[spec.name] = cats[label]
            continue
        enc = model.encoders[spec.name]
        if spec.name in fixed_codes:
            cats = np.asarray(spec.categories, dtype=object)
            table[spec.name] = cats[np.asarray(fixed_codes[spec.name], dtype=np.int64)]
        elif isinstance(enc, CategoryGroups):
            table[spec.name] = enc.decode(bins[spec.name], rng)
        else:
            table[spec.name] = enc.decode(bins[spec.name], rng)
    return table
