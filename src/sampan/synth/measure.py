"""A data owner's side of synthesis: the only code that reads records, and every release it makes.

`PartyMeasurer` holds one party's validated table and answers the fitter's requests with noisy
counts only: a histogram of the label (or the row count), 1-way histograms over public grids, an
exponential-mechanism choice of tree edges, and histograms of the selected cliques. Each release is
charged to the party's ledger *before* it is computed (``Ledger.record`` refuses an over-budget
release and nothing is released). In a deployment this object lives in the party's agent; the fitter
only ever receives what these methods return.

Sensitivity: every histogram here partitions the rows (one cell per row), so adding or removing one
record changes one cell by one: L2 sensitivity 1. A selection score is an L1 distance between a
histogram and a fixed (already public) table, so it also moves by at most 1 per record.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from sampan.privacy.ledger import Ledger
from sampan.privacy.mechanisms import GaussianMechanism
from sampan.privacy.randomness import secure_generator
from sampan.synth.budget import em_event, gaussian_event
from sampan.synth.discretize import FineGrid
from sampan.synth.encoders import Encoder
from sampan.synth.schema import SynthSchema
from sampan.synth.select import em_spanning_tree, independence_scores
from sampan.synth.table import category_codes, n_rows, validate_table

__all__ = ["Axis", "PartyMeasurer", "clique_note", "label_note", "one_way_note"]

Axis = tuple[str, np.ndarray | None]
"""A clique axis: column name and an optional map from the column's model bins to coarser groups."""


# The notes name each release in both ledgers (the party's and the run's): the coordinator charges the
# run's ledger with the same words before it asks (`sampan.synth.coordinator`), so the two agree.
def label_note(schema: SynthSchema) -> str:
    return f"1-way {schema.label or 'row count'}"


def one_way_note(schema: SynthSchema, column: str, grid: FineGrid | None) -> str:
    spec = schema.column(column)
    if spec.kind == "categorical":
        return f"1-way {column} ({spec.size} categories)"
    cells = grid.n_cells if grid is not None else 0
    return f"1-way {column} (DP quantiles: {cells}-cell fine histogram)"


def clique_note(schema: SynthSchema, names: Sequence[str], cells: int) -> str:
    named = [n or (schema.label or "row count") for n in names]
    return f"{len(names)}-way ({', '.join(named)}): {cells} cells"


class PartyMeasurer:
    """One party's records behind a narrow, ledger-charged, noise-only interface."""

    def __init__(self, party: str, table: Mapping[str, np.ndarray], schema: SynthSchema, ledger: Ledger,
                 rng: np.random.Generator | None = None, noise_share: float = 1.0) -> None:
        """``noise_share``: the fraction of each charged sigma this party adds itself (1 unless the releases
        are summed by secure aggregation with distributed noise, see `sampan.synth.aggregate`)."""
        if not 0 < noise_share <= 1:
            raise ValueError(f"noise_share must be in (0, 1], got {noise_share}")
        self.party = party
        self.noise_share = noise_share
        self.noisy_rows: float | None = None  # this party's own noisy row count, once released
        self._schema = schema
        self._table = validate_table(table, schema, f"party '{party}'")
        self._n = n_rows(self._table)
        self._ledger = ledger
        self._rng = rng
        self._step = 0
        self._bins: dict[str, np.ndarray] = {}
        self._sizes: dict[str, int] = {}
        self.releases: list[dict[str, object]] = []

    # -- helpers -------------------------------------------------------------------------------------------

    def _generator(self) -> np.random.Generator:
        return self._rng if self._rng is not None else secure_generator()

    def _release(self, counts: np.ndarray, sigma: float, note: str, attributes: Sequence[str]) -> np.ndarray:
        """Charge the ledger for noise ``sigma``, then add Gaussian noise (sensitivity 1) to a histogram:
        all of it, or this party's share of it when the sum is secure-aggregated."""
        self._ledger.record(gaussian_event(self.party, sigma, 1.0, self._step, note))
        self._step += 1
        self.releases.append({"kind": "gaussian", "note": note, "attributes": list(attributes),
                              "cells": int(counts.size), "sigma": sigma, "sensitivity": 1.0,
                              "rho": 1.0 / (2.0 * sigma**2), "noise_share": self.noise_share})
        mechanism = GaussianMechanism(1.0, sigma * self.noise_share)
        return np.asarray(mechanism.release(counts.astype(np.float64), self._generator()))

    def _label_codes(self) -> tuple[np.ndarray, int]:
        label = self._schema.label
        if label is None:
            return np.zeros(self._n, dtype=np.int64), 1
        spec = self._schema.column(label)
        return category_codes(self._table[label], spec), spec.size

    # -- releases ------------------------------------------------------------------------------------------

    def label_counts(self, sigma: float) -> np.ndarray:
        """Noisy histogram of the label classes (or of the row count if the table has no label)."""
        codes, size = self._label_codes()
        counts = np.bincount(codes, minlength=size)
        attributes = [self._schema.label] if self._schema.label else []
        noisy = self._release(counts, sigma, label_note(self._schema), attributes)
        self.noisy_rows = max(float(np.maximum(noisy, 0).sum()), 1.0)
        return noisy

    def one_way(self, column: str, sigma: float, grid: FineGrid | None = None) -> np.ndarray:
        """Noisy histogram of a categorical column, or of a numeric column over a public fine grid."""
        spec = self._schema.column(column)
        values = self._table[column]
        if spec.kind == "categorical":
            counts = np.bincount(category_codes(values, spec), minlength=spec.size)
        else:
            if grid is None:
                raise ValueError(f"column '{column}' is numeric: a public fine grid is needed")
            counts = np.bincount(grid.encode(values), minlength=grid.n_cells)
        return self._release(counts, sigma, one_way_note(self._schema, column, grid), [column])

    def set_encoders(self, encoders: Mapping[str, Encoder]) -> None:
        """Receive the public bin definitions and encode this party's records with them (locally)."""
        label = self._schema.label
        for name, encoder in encoders.items():
            if name == label:
                continue
            self._bins[name] = encoder.encode(self._table[name])
            self._sizes[name] = encoder.n_bins
        codes, size = self._label_codes()
        self._bins[""] = codes
        self._sizes[""] = size

    def select_tree(self, features: Sequence[str], baselines: Mapping[tuple[str, str], np.ndarray],
                    epsilon_per_round: float) -> list[tuple[str, str]]:
        """Edges of a spanning tree over ``features``, chosen round by round with the exponential mechanism.

        Score of a pair: L1 distance between its 2-way histogram and a public baseline table built from
        earlier noisy releases, scaled to this party's own noisy row count (its earlier release, so
        post-processing). One EM release per round.
        """
        if self.noisy_rows is None:
            raise RuntimeError(f"party '{self.party}': release the label counts before selecting a tree")
        if self.noise_share < 1.0:
            # Under secure aggregation this party's own noisy count was never released on its own (it holds
            # only a share of the noise), so it may not steer a public choice: use the exact count, which
            # moves the score by one more per record (sensitivity 2), and halve the mechanism's epsilon.
            scale, sensitivity = float(self._n), 2.0
        else:
            scale, sensitivity = self.noisy_rows, 1.0
        scores = independence_scores(
            {f: self._bins[f] for f in features}, {f: self._sizes[f] for f in features}, baselines, scale,
        )
        rounds = len(features) - 1
        for r in range(rounds):
            self._ledger.record(em_event(self.party, epsilon_per_round, self._step,
                                         f"select tree edge {r + 1}/{rounds}"))
            self._step += 1
            self.releases.append({"kind": "exponential", "note": f"select tree edge {r + 1}/{rounds}",
                                  "attributes": [], "candidates": len(scores), "epsilon": epsilon_per_round,
                                  "score_sensitivity": sensitivity, "rho": epsilon_per_round**2 / 8.0})
        return em_spanning_tree(features, scores, epsilon_per_round / sensitivity, self._generator())

    def clique(self, axes: Sequence[Axis], sigma: float) -> np.ndarray:
        """Noisy joint histogram over the label axis (name ``""``) and feature axes, optionally coarsened."""
        index = np.zeros(self._n, dtype=np.int64)
        shape = []
        for name, coarsen in axes:
            codes = self._bins[name]
            size = self._sizes[name]
            if coarsen is not None:
                codes, size = coarsen[codes], int(coarsen.max()) + 1
            index = index * size + codes
            shape.append(size)
        counts = np.bincount(index, minlength=int(np.prod(shape))).reshape(shape)
        note = clique_note(self._schema, [n for n, _ in axes], int(counts.size))
        return self._release(counts, sigma, note, [n for n, _ in axes if n]).reshape(shape)
