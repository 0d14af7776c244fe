"""A data owner's side of synthesis: the only code that reads records, and every release it makes.

`PartyMeasurer` holds one party's validated table and answers the fitter's requests with noisy
counts only: a histogram of the label (or the row count), 1-way histograms over public grids, an
exponential-mechanism choice of tree edges, and histograms of the selected cliques. Every structure a
request brings that will index the records (fine grids, bin definitions, coarsening maps, baselines) is
checked against the public schema first (`sampan.synth.request_checks`), then the release is charged to the
party's ledger (``Ledger.record`` refuses an over-budget release and nothing is released), and only then
are the records read. So a refusal depends on the request alone, and a failure after the charge is
reported in the same words whatever the records (details stay in the party's own log). In a deployment
this object lives in the party's agent; the fitter only ever receives what these methods return.

Sensitivity: every histogram here partitions the rows (one cell per row), so adding or removing one
record changes one cell by one: L2 sensitivity 1. A selection score is an L1 distance between a
histogram and a fixed (already public) table, so it also moves by at most 1 per record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

from sampan.privacy.ledger import Ledger
from sampan.privacy.mechanisms import GaussianMechanism
from sampan.privacy.randomness import secure_generator
from sampan.synth.budget import em_event, gaussian_event
from sampan.synth.discretize import FineGrid
from sampan.synth.encoders import Encoder
from sampan.synth.request_checks import (
    MAX_CLIQUE_CELLS,
    RequestRefused,
    check_baselines,
    check_coarsen,
    check_encoder,
    public_grid,
)
from sampan.synth.schema import SynthSchema
from sampan.synth.select import em_spanning_tree, independence_scores
from sampan.synth.table import category_codes, n_rows, validate_table

if TYPE_CHECKING:
    from sampan.synth.aggregate import ReleaseRequest

__all__ = ["Axis", "MeasurementFailed", "Measurer", "PartyMeasurer", "clique_note", "label_note", "one_way_note"]

log = logging.getLogger("sampan.synth.measure")
T = TypeVar("T")

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


class MeasurementFailed(RuntimeError):
    """A charged release that failed: the same words whatever the records (the details are logged locally)."""


class Measurer(Protocol):
    """What the fitter asks of one party: a local `PartyMeasurer` answers with noisy arrays, the coordinator's
    `RemoteMeasurer` with `ReleaseRequest`s that the aggregator resolves; the fitter runs the same plan on both."""

    party: str
    releases: list[dict[str, object]]

    def label_counts(self, sigma: float) -> np.ndarray | ReleaseRequest: ...

    def one_way(self, column: str, sigma: float, grid: FineGrid | None = None) -> np.ndarray | ReleaseRequest: ...

    def set_encoders(self, encoders: Mapping[str, Encoder]) -> None: ...

    def select_tree(self, features: Sequence[str], baselines: Mapping[tuple[str, str], np.ndarray],
                    epsilon_per_round: float) -> list[tuple[str, str]]: ...

    def clique(self, axes: Sequence[Axis], sigma: float) -> np.ndarray | ReleaseRequest: ...


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
        self._encoders: dict[str, Encoder] = {}  # checked public bin definitions, by column
        self._bins: dict[str, np.ndarray] = {}  # the records' bin codes, computed after a charge
        self._sizes: dict[str, int] = {"": self._label_size()}
        self.releases: list[dict[str, object]] = []

    # -- helpers -------------------------------------------------------------------------------------------

    def _generator(self) -> np.random.Generator:
        return self._rng if self._rng is not None else secure_generator()

    def _label_size(self) -> int:
        label = self._schema.label
        return self._schema.column(label).size if label is not None else 1

    def _charge(self, sigma: float, note: str, attributes: Sequence[str], cells: int) -> None:
        """Charge the ledger for one Gaussian release of ``cells`` public cells (refused: nothing recorded)."""
        self._ledger.record(gaussian_event(self.party, sigma, 1.0, self._step, note))
        self._step += 1
        self.releases.append({"kind": "gaussian", "note": note, "attributes": list(attributes),
                              "cells": int(cells), "sigma": sigma, "sensitivity": 1.0,
                              "rho": 1.0 / (2.0 * sigma**2), "noise_share": self.noise_share})

    def _after_charge(self, what: str, compute: Callable[[], T]) -> T:
        """Run a computation on the records once the release is charged; a failure says the same whatever
        the records (the coordinator learns only that it failed; the details go to this party's log)."""
        try:
            return compute()
        except Exception:  # noqa: BLE001 - any data-dependent failure must read the same
            log.exception("party %s: %s failed after it was charged", self.party, what)
            raise MeasurementFailed(f"party '{self.party}': the {what} failed after it was charged "
                                    "(details in the party's log)") from None

    def _release(self, counts: Callable[[], np.ndarray], shape: tuple[int, ...], sigma: float, note: str,
                 attributes: Sequence[str]) -> np.ndarray:
        """Charge the ledger for noise ``sigma``, then count and add Gaussian noise (sensitivity 1) to the
        histogram of public ``shape``: all of it, or this party's share of it when the sum is secure-aggregated."""
        cells = int(np.prod(shape))
        self._charge(sigma, note, attributes, cells)
        mechanism = GaussianMechanism(1.0, sigma * self.noise_share)

        def noisy() -> np.ndarray:
            exact = np.asarray(counts(), np.float64)
            if exact.size != cells:  # cannot happen once the request is checked; never release another shape
                raise AssertionError(f"histogram of {exact.size} cells, {cells} planned")
            return np.asarray(mechanism.release(exact.reshape(shape), self._generator()))

        return self._after_charge(note, noisy)

    def _label_codes(self) -> tuple[np.ndarray, int]:
        label = self._schema.label
        if label is None:
            return np.zeros(self._n, dtype=np.int64), 1
        spec = self._schema.column(label)
        return category_codes(self._table[label], spec), spec.size

    def _codes(self, name: str) -> np.ndarray:
        """The records' bin codes on an axis (``""`` = the label): computed only after a charge."""
        if name not in self._bins:
            self._bins[name] = self._label_codes()[0] if name == "" else self._encoders[name].encode(self._table[name])
        return self._bins[name]

    def _axis_size(self, name: str, where: str) -> int:
        if name not in self._sizes:
            raise RequestRefused(f"{where}: axis '{name}' has no bin definitions yet")
        return self._sizes[name]

    # -- releases ------------------------------------------------------------------------------------------

    def label_counts(self, sigma: float) -> np.ndarray:
        """Noisy histogram of the label classes (or of the row count if the table has no label)."""
        size = self._sizes[""]
        attributes = [self._schema.label] if self._schema.label else []
        noisy = self._release(lambda: np.bincount(self._codes(""), minlength=size), (size,), sigma,
                              label_note(self._schema), attributes)
        self.noisy_rows = max(float(np.maximum(noisy, 0).sum()), 1.0)
        return noisy

    def one_way(self, column: str, sigma: float, grid: FineGrid | None = None) -> np.ndarray:
        """Noisy histogram of a categorical column, or of a numeric column over the public fine grid (the
        request's grid is checked against the one the party rebuilds from the schema, and that one is used)."""
        spec = self._schema.column(column)
        if spec.kind == "categorical":
            size = spec.size

            def counts() -> np.ndarray:
                return np.bincount(category_codes(self._table[column], spec), minlength=size)
        else:
            if grid is None:
                raise RequestRefused(f"column '{column}' is numeric: a public fine grid is needed")
            own = public_grid(spec, grid, f"party '{self.party}': one_way {column}")
            size = own.n_cells

            def counts() -> np.ndarray:
                return np.bincount(own.encode(self._table[column]), minlength=size)
            grid = own
        return self._release(counts, (size,), sigma, one_way_note(self._schema, column, grid), [column])

    def set_encoders(self, encoders: Mapping[str, Encoder]) -> None:
        """Receive the public bin definitions, checked against the schema (nothing is encoded yet: the records
        are binned only for a charged release)."""
        label = self._schema.label
        checked = {name: check_encoder(self._schema.column(name), encoder, f"party '{self.party}': bins of '{name}'")
                   for name, encoder in encoders.items() if name != label}
        for name, encoder in checked.items():
            self._encoders[name] = encoder
            self._sizes[name] = encoder.n_bins
            self._bins.pop(name, None)

    def select_tree(self, features: Sequence[str], baselines: Mapping[tuple[str, str], np.ndarray],
                    epsilon_per_round: float) -> list[tuple[str, str]]:
        """Edges of a spanning tree over ``features``, chosen round by round with the exponential mechanism.

        Score of a pair: L1 distance between its 2-way histogram and a public baseline table built from
        earlier noisy releases, scaled to this party's own noisy row count (its earlier release, so
        post-processing). One EM release per round, all charged before the records are read.
        """
        where = f"party '{self.party}': select_tree"
        if self.noisy_rows is None:
            raise RuntimeError(f"party '{self.party}': release the label counts before selecting a tree")
        features = [str(f) for f in features]
        if len(set(features)) != len(features) or "" in features:
            raise RequestRefused(f"{where}: features must be distinct columns")
        sizes = {f: self._axis_size(f, where) for f in features}
        baselines = check_baselines(features, sizes, baselines, where)
        if not (isinstance(epsilon_per_round, (int, float)) and np.isfinite(epsilon_per_round)
                and epsilon_per_round > 0):
            raise RequestRefused(f"{where}: epsilon per round must be positive and finite")
        if self.noise_share < 1.0:
            # Under secure aggregation this party's own noisy count was never released on its own (it holds
            # only a share of the noise), so it may not steer a public choice: use the exact count, which
            # moves the score by one more per record (sensitivity 2), and halve the mechanism's epsilon.
            scale, sensitivity = float(self._n), 2.0
        else:
            scale, sensitivity = self.noisy_rows, 1.0
        rounds = len(features) - 1
        for r in range(rounds):
            self._ledger.record(em_event(self.party, epsilon_per_round, self._step,
                                         f"select tree edge {r + 1}/{rounds}"))
            self._step += 1
            self.releases.append({"kind": "exponential", "note": f"select tree edge {r + 1}/{rounds}",
                                  "attributes": [], "candidates": len(baselines), "epsilon": epsilon_per_round,
                                  "score_sensitivity": sensitivity, "rho": epsilon_per_round**2 / 8.0})

        def tree() -> list[tuple[str, str]]:
            scores = independence_scores({f: self._codes(f) for f in features}, sizes, baselines, scale)
            return em_spanning_tree(features, scores, epsilon_per_round / sensitivity, self._generator())

        return self._after_charge("tree selection", tree)

    def clique(self, axes: Sequence[Axis], sigma: float) -> np.ndarray:
        """Noisy joint histogram over the label axis (name ``""``) and feature axes, optionally coarsened
        (each map checked: one group in 0..size-1 for every bin of its axis)."""
        where = f"party '{self.party}': clique"
        checked: list[tuple[str, np.ndarray | None, int]] = []
        for i, (name, coarsen) in enumerate(axes):
            size = self._axis_size(str(name), where)
            if coarsen is not None:
                coarsen = check_coarsen(coarsen, size, f"{where} coarsening map of axis {i} ('{name}')")
                size = int(coarsen.max()) + 1
            checked.append((str(name), coarsen, size))
        if not checked:
            raise RequestRefused(f"{where}: no axes")
        shape = tuple(size for _, _, size in checked)
        if int(np.prod([float(s) for s in shape])) > MAX_CLIQUE_CELLS:
            raise RequestRefused(f"{where}: {shape} has more than {MAX_CLIQUE_CELLS} cells")

        def counts() -> np.ndarray:
            index = np.zeros(self._n, dtype=np.int64)
            for name, coarsen, size in checked:
                codes = self._codes(name)
                index = index * size + (coarsen[codes] if coarsen is not None else codes)
            return np.bincount(index, minlength=int(np.prod(shape)))

        note = clique_note(self._schema, [n for n, _, _ in checked], int(np.prod(shape)))
        return self._release(counts, shape, sigma, note, [n for n, _, _ in checked if n])
