"""Fitting a synthesiser: central (one data owner) or federated (several, without pooling records).

Both run the same plan against one or more `PartyMeasurer`s and sum their noisy releases (in a
deployment the sum goes through secure aggregation, so the fitter sees only the total; each party's
own noise already protects it, whoever sees its release). Plan, with rho the zCDP total of the budget:

1. label histogram (or row count) -> n_hat, which sizes everything that follows;
2. 1-way histograms: categories, or a public fine grid per numeric column -> DP quantile bins;
4. (label, feature) 2-ways for every feature;
5. a spanning tree over the features by the exponential mechanism (per party; votes combined), scored
   against what the label already explains;
6. a (feature, parent) 2-way per tree edge, the parent's bins merged to what the noise allows;
7. estimation (`estimate.py`) -> label distribution + conditional tables -> `SynthModel`.

0. (``fit_undeclared`` only, when no schema is declared) the schema itself, released under DP by
   `sampan.synth.domain` from ``domain_share`` of rho (and ``domain_delta_share`` of delta);

Every adaptive choice (grid sizes, bins per column, parent coarsening) depends on the data only
through earlier noisy releases, so it is post-processing.

What each role learns (unit of privacy: one record of one party):
- a data party: its own records; the public schema; the other parties' noisy releases only as far as
  the fitter publishes them (the model);
- the fitter / coordinator: with plain aggregation, every party's noisy release (each carries its
  party's full charged noise) and each party's EM-chosen tree; with SecAgg+, only the sums (carrying
  the full noise together) and the trees;
- whoever reads the model folder or the releasable report: the schema (declared, or DP-released) and
  post-processing of the releases above, each listed in the receipt with its noise and charge. The
  confidential report holds exact statistics of the real rows and is for the data owner only.
A neighbouring-dataset test (`tests/attacks/test_synth_neighbouring.py`) checks that nothing else
depends on the records.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sampan.privacy.ledger import UNIT_OF_PRIVACY, Budget, Ledger
from sampan.privacy.randomness import secure_generator
from sampan.synth.aggregate import PlainSum, SecureSum
from sampan.synth.budget import BudgetWeights, em_event, gaussian_event, rho_for_budget, sigma_for_rho
from sampan.synth.discretize import build_bins, fine_grid
from sampan.synth.domain import DomainRelease, release_domain
from sampan.synth.encoders import Encoder, build_groups
from sampan.synth.estimate import PairMeasurement, estimate_tables, fit_label_margins
from sampan.synth.fit_columns import _coarsen_map, _identity_encoder, _is_direct, _orient, _pool_direct, _pow2_clip
from sampan.synth.measure import Axis, Measurer, PartyMeasurer
from sampan.synth.model import SynthModel
from sampan.synth.schema import SchemaError, SynthSchema
from sampan.synth.select import baseline_tables, combine_trees

__all__ = ["SynthConfig", "fit_synthesizer", "fit_undeclared"]  # federated: sampan.synth.workflow

METHOD = ("sampan tree-augmented naive Bayes (MST/PrivBayes family): noisy 1-ways with DP quantile bins, "
          "Gaussian-noised (label, feature) and EM-selected (feature, parent) 2-ways, consistent estimation")


@dataclass(frozen=True)
class SynthConfig:
    """Budget and the knobs of the plan; the defaults are what the benchmarks use.

    ``tree``: model (feature, parent) dependences: True, False, or None = only when the noisy row count
    is at least ``tree_min_signal`` times the noise of a (feature, parent) table (small or very private
    tables put everything into the (label, feature) tables instead: a naive Bayes).
    ``bin_signal``: a numeric column gets about n / (bin_signal * label classes * sigma) bins (at most
    ``max_bins``). ``clique_signal``: a (feature, parent) table may have at most n / (clique_signal *
    sigma) cells; the parent's bins are merged until it fits (edge dropped if fewer than 2 groups remain).
    """

    epsilon: float
    delta: float = 1e-5
    weights: BudgetWeights = field(default_factory=BudgetWeights)
    tree: bool | None = None
    tree_min_signal: float = 250.0
    max_bins: int = 32
    max_fine_cells: int = 256
    min_fine_cells: int = 16
    bin_signal: float = 4.0
    clique_signal: float = 2.0
    fine_threshold: float | None = None  # sigmas; None = Bonferroni-style per grid (see discretize.py)
    category_threshold: float = 3.0
    shrink_label_pairs: bool = True
    domain_share: float = 0.15  # of rho, for a schema released under DP (`fit_undeclared` only)
    domain_delta_share: float = 0.1  # of delta, for the category thresholds of that release

    def __post_init__(self) -> None:
        Budget(self.epsilon, self.delta)  # validates epsilon > 0 and 0 < delta < 1, naming the field
        for name in ("max_bins", "max_fine_cells", "min_fine_cells"):
            if int(getattr(self, name)) < 2:
                raise ValueError(f"SynthConfig.{name} must be >= 2")
        for name in ("domain_share", "domain_delta_share"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"SynthConfig.{name} must be in (0, 1)")
        for name in ("bin_signal", "clique_signal", "fine_threshold", "category_threshold"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"SynthConfig.{name} must be > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fit(measurers: Mapping[str, Measurer], schema: SynthSchema, config: SynthConfig, ledger: Ledger,
         rng: np.random.Generator | None, aggregate: PlainSum | SecureSum, rho: float | None = None,
         domain: DomainRelease | None = None) -> SynthModel:
    """``rho``: the zCDP left for the measurements (default: the whole budget); ``domain``: the DP release
    of the schema that came first, for the receipt."""
    started = time.perf_counter()
    if schema.domain_source == "inferred":
        raise SchemaError("this schema was read off the records (domain_source 'inferred'), which publishes real "
                          "values: declare a schema, or let the fitter release the domain under DP")
    parties = list(measurers.values())
    K = len(parties)
    root_k = aggregate.sum_noise(K)  # noise std of the summed releases, in units of one party's sigma
    features = [c.name for c in schema.features]
    if not features:
        raise ValueError("the schema needs at least one column besides the label")
    with_label = schema.label is not None
    L = len(schema.column(schema.label).categories or ()) if with_label else 1  # type: ignore[arg-type]
    rho = rho_for_budget(config.epsilon, config.delta) if rho is None else rho
    direct = [f for f in features if _is_direct(schema.column(f))]
    binned = [f for f in features if f not in direct]
    can_tree = len(features) >= 2 and config.tree is not False
    two_way = features if with_label else direct  # measured (label, feature), or 1-way of a direct column
    rounds = len(features) - 1

    def plan(tree: bool, budget: float, with_label_release: bool) -> dict[str, float]:
        counts = {"label": int(with_label_release), "one_way": len(binned), "label_pair": len(two_way),
                  "select": rounds if tree else 0, "pair": rounds if tree else 0}
        return config.weights.split(budget, {k: n for k, n in counts.items() if n})

    full = plan(can_tree, rho, True)
    sigma_label = sigma_for_rho(full["label"])
    # The largest plan (with the tree) is checked against every party's budget before any data is read,
    # so an over-budget fit stops before its first release. Every plan composes to the same total rho,
    # so the plan actually run (chosen after the label release) costs exactly what was checked.
    planned = []
    for name in measurers:
        planned.append(gaussian_event(name, sigma_label, 1.0, 0, "planned: label / count"))
        planned += [gaussian_event(name, sigma_for_rho(full[k]), 1.0, 0, f"planned: {k}")
                    for k in ("one_way", "label_pair", "pair") if k in full
                    for _ in range(len(binned) if k == "one_way" else len(two_way) if k == "label_pair" else rounds)]
        if "select" in full:
            planned += [em_event(name, math.sqrt(8 * full["select"]), 0, "planned: selection") for _ in range(rounds)]
    ledger.check(planned)

    # 1. label / count
    label_releases = [p.label_counts(sigma_label) for p in parties]
    label_sum = aggregate(label_releases)
    n_hat = max(float(np.maximum(label_sum, 0).sum()), 1.0)

    # The tree is worth its budget only if (feature, parent) tables can hold enough cells above the noise;
    # decided from the noisy row count (post-processing), unless the config forces it.
    with_tree = can_tree
    if can_tree and config.tree is None:
        with_tree = n_hat / (root_k * sigma_for_rho(full["pair"])) >= config.tree_min_signal
    per = plan(with_tree, rho - full["label"], False)
    sigma_1 = sigma_for_rho(per["one_way"]) if binned else math.inf
    sigma_ly = sigma_for_rho(per["label_pair"]) if two_way else math.inf
    sigma_p = sigma_for_rho(per["pair"]) if with_tree else math.inf
    eps_em = math.sqrt(8 * per["select"]) if with_tree else 0.0

    # 2. fine 1-ways of binned numeric columns -> DP quantile bins
    encoders: dict[str, Encoder] = {f: _identity_encoder(schema.column(f)) for f in direct}
    one_ways: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    noise_1, noise_ly = root_k * sigma_1, root_k * sigma_ly
    noise_pair = noise_ly if with_label else root_k * sigma_p if with_tree else noise_1
    n_fine = _pow2_clip(n_hat / (config.bin_signal * noise_1), config.min_fine_cells, config.max_fine_cells)
    n_bins = int(min(max(n_hat / (config.bin_signal * L * noise_pair), 2), config.max_bins))
    for name in binned:
        grid = fine_grid(schema.column(name), n_fine)
        noisy = aggregate([p.one_way(name, sigma_1, grid) for p in parties])
        enc = build_bins(grid, noisy, noise_1, n_bins, config.fine_threshold)
        cell_bin = enc.cell_to_bin()
        encoders[name] = enc
        one_ways[name] = (np.bincount(cell_bin, weights=noisy, minlength=enc.n_bins),
                          np.bincount(cell_bin, minlength=enc.n_bins) * noise_1**2)
    label_encoder = None
    if with_label:
        label_encoder = build_groups(schema.column(schema.label), label_sum, root_k * sigma_label,  # type: ignore[arg-type]
                                     compress=False)
    for p in parties:
        p.set_encoders(encoders)

    # 3. (label, feature) 2-ways (1-ways of direct columns if there is no label); rare categories pooled after
    label_pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in two_way:
        axes: list[Axis] = [("", None), (name, None)]
        table = aggregate([p.clique(axes, sigma_ly) for p in parties]).reshape(L, -1)
        var = np.full(table.shape[1], noise_ly**2)
        if name in direct:
            encoders[name], table, var = _pool_direct(schema.column(name), table, noise_ly, config)
        label_pairs[name] = (table, var)
    for p in parties:
        p.set_encoders(encoders)
    c_y, margins = fit_label_margins(label_sum, (root_k * sigma_label) ** 2, one_ways, label_pairs, features,
                                     config.shrink_label_pairs)

    # 4. structure: each party picks a tree against the public baseline; trees combined by vote
    gen = rng if rng is not None else secure_generator()
    edges: list[tuple[str, str]] = []
    if with_tree:
        p_label = c_y / max(c_y.sum(), 1e-300)
        conditionals = {f: margins[f] / np.maximum(margins[f].sum(1, keepdims=True), 1e-300) for f in features}
        baselines = baseline_tables(conditionals, p_label, 1.0)
        trees = [p.select_tree(features, baselines, eps_em) for p in parties]
        edges = combine_trees(features, trees, gen)
    order, parents = _orient(features, edges)

    # 5. (feature, parent) 2-ways, the parent's bins merged until the table fits the noise
    coarsen: dict[str, np.ndarray | None] = {f: None for f in features}
    pairs: dict[str, PairMeasurement] = {}
    if with_tree:
        noise_p = root_k * sigma_p
        cap = n_hat / (config.clique_signal * noise_p)
        for name in order:
            parent = parents[name]
            if parent is None:
                continue
            groups = int(cap // encoders[name].n_bins)
            if groups < 2:
                parents[name] = None
                continue
            cmap = _coarsen_map(encoders[parent], margins[parent].sum(0), groups)
            coarsen[name] = cmap
            table = aggregate([p.clique([(name, None), (parent, cmap)], sigma_p) for p in parties])
            pairs[name] = PairMeasurement(name, parent, cmap, table, noise_p**2)

    # 6. estimation
    fitted = estimate_tables(label_sum, (root_k * sigma_label) ** 2, one_ways, label_pairs, pairs, order,
                             config.shrink_label_pairs)
    receipt = _receipt(measurers, schema, config, ledger, rho, rng, aggregate.describe(K), domain)
    info = {
        "seconds_fit": time.perf_counter() - started,
        "parties": list(measurers),
        "n_hat": fitted.n_hat,
        "bins": {f: encoders[f].n_bins for f in features},
        "fine_cells": n_fine,
        "edges": [[parents[f], f] for f in order if parents[f] is not None],
        "coarsened_parent_groups": {f: int(c.max()) + 1 for f, c in coarsen.items() if c is not None},
        "shrinkage_weight": fitted.shrinkage,
        "tree": with_tree,
        "sigma": {k: (v if math.isfinite(v) else None) for k, v in {
            "label": sigma_label, "one_way": sigma_1, "label_pair": sigma_ly, "pair": sigma_p}.items()},
        "em_epsilon_per_round": eps_em,
        "config": config.to_dict(),
    }
    return SynthModel(
        schema=schema, encoders=encoders, label_encoder=label_encoder, order=order, parents=parents,
        coarsen=coarsen, p_label=fitted.p_label, conditionals=fitted.conditionals, n_hat=fitted.n_hat,
        receipt=receipt, info=info,
    )


def _receipt(measurers: Mapping[str, Measurer], schema: SynthSchema, config: SynthConfig, ledger: Ledger,
             rho: float, rng: np.random.Generator | None, aggregation: str,
             domain: DomainRelease | None = None) -> dict[str, Any]:
    threshold_delta = domain.threshold_delta if domain is not None else 0.0
    if domain is None:
        domain_doc: dict[str, Any] = {"source": "declared", "note": (
            "kinds, categories and numeric bounds were declared (public): the whole model is covered by the "
            "guarantee")}
    else:
        domain_doc = {"source": "dp", "threshold_delta": threshold_delta, "note": (
            "kinds, categories and numeric bounds were released under DP (the 'domain:' releases below, charged "
            "to the ledger; categories kept only above a noisy-count threshold, which adds threshold_delta to "
            "delta); values outside them became '(other)' or were clipped")}
    parties = {}
    for name, m in measurers.items():
        releases = (domain.releases if domain is not None else []) + m.releases
        parties[name] = {
            "epsilon_spent": ledger.spent(name),
            "delta": ledger.budget(name).delta + threshold_delta,
            "rho_spent": float(sum(r["rho"] for r in releases)),
            "releases": releases,
        }
    return {
        "method": METHOD,
        "epsilon": config.epsilon,
        "delta": config.delta,
        "rho": rho + (float(sum(r["rho"] for r in domain.releases)) if domain is not None else 0.0),
        "accountant": ledger.accountant,
        "level": "DP1",
        "unit_of_privacy": UNIT_OF_PRIVACY,
        "parties": parties,
        "federated": len(measurers) > 1,
        "aggregation": aggregation,
        "domain": domain_doc,
        # Any generator passed in (seeded or not) replaces the per-draw OS CSPRNG: conservative, say so.
        "reproducible_not_private": rng is not None,
        "post_processing": "bins, tree orientation, coarsening, estimation and sampling use only the releases above",
        "ledger": json.loads(ledger.to_json()),
    }


def _ledger(parties: list[str], config: SynthConfig, ledger: Ledger | None) -> Ledger:
    if ledger is None:
        return Ledger({p: Budget(config.epsilon, config.delta) for p in parties}, accountant="rdp")
    if ledger.accountant != "rdp":
        raise ValueError("the synthesiser needs an RDP ledger: its exponential-mechanism selection is accounted "
                         "by its zCDP bound, which PLD accounting cannot take")
    missing = [p for p in parties if p not in ledger.parties]
    if missing:
        raise ValueError(f"ledger has no budget for part(y/ies) {missing}")
    return ledger


def fit_synthesizer(table: Mapping[str, np.ndarray], schema: SynthSchema, config: SynthConfig, *,
                    party: str = "data_owner", ledger: Ledger | None = None,
                    rng: np.random.Generator | None = None) -> SynthModel:
    """Fit on one data owner's table under (config.epsilon, config.delta)-DP; see the module doc.

    ``rng``: any generator passed here replaces the OS CSPRNG for the noise; the receipt then marks the
    model reproducible, not private (tests and demos only).
    """
    book = _ledger([party], config, ledger)
    return _fit({party: PartyMeasurer(party, table, schema, book, rng)}, schema, config, book, rng, PlainSum())


def fit_undeclared(columns: Mapping[str, np.ndarray], config: SynthConfig, *, label: str | None = None,
                   categorical: tuple[str, ...] | list[str] = (), categories: Mapping[str, Any] | None = None,
                   drop_incomplete_rows: bool = False,
                   party: str = "data_owner", rng: np.random.Generator | None = None,
                   source: str = "table") -> SynthModel:
    """Fit on a table whose schema was not declared: the schema is released under DP first
    (`sampan.synth.domain`, ``config.domain_share`` of the zCDP budget and ``config.domain_delta_share``
    of delta for its category thresholds), then the measurements spend the rest. The ledger's budget is
    (epsilon, delta - threshold delta), so the receipt's guarantee is (epsilon, delta) in all."""
    threshold_delta = config.delta * config.domain_delta_share
    book = Ledger({party: Budget(config.epsilon, config.delta - threshold_delta)}, accountant="rdp")
    rho = rho_for_budget(config.epsilon, config.delta - threshold_delta)
    rho_domain = rho * config.domain_share
    domain = release_domain(columns, party=party, ledger=book, rho=rho_domain, threshold_delta=threshold_delta,
                            label=label, categorical=categorical, categories=categories,
                            drop_incomplete_rows=drop_incomplete_rows,
                            rng=rng, source=source)
    measurer = PartyMeasurer(party, domain.table, domain.schema, book, rng)
    measurer._step = len(domain.releases)
    return _fit({party: measurer}, domain.schema, config, book, rng, PlainSum(), rho=rho - rho_domain, domain=domain)
