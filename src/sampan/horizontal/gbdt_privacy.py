"""Horizontal GBDT under DP, at the coordinator: the run ledger, the noise, public bin edges, the release plan.

Every bank release is charged to the run's ledger (one event per bank, level DP1, Gaussian at the request's
noise multiplier) and persisted through ``ctx.recorder.charge`` *before* the request leaves (write-ahead); the
bank charges its own ledger again (`sampan.privacy.gbdt_dp`). The releases are fixed up front by the tree
shape: one [row count, positives] release at setup, then per tree at most max_depth + 1 histogram releases
(the root, then one per level: the nodes of a level hold disjoint rows, so a level is ONE release), the last
of them node totals only (leaf values need G and H, not the bins). 'auto' noise is the smallest multiplier at
which all n_trees × (max_depth + 1) releases fit every bank's budget; a tree that would not fit is not started
(the budget stop: the model keeps the trees before it). A bank's own ledger (all its runs) may hold less than the
run's: it then refuses a release of a tree with `BankBudgetRefused` (`sampan.privacy.gbdt_dp`), and the
coordinator stops there too, keeping the finished trees and recording why (review R13-HGB-2). Bin edges come
from public bounds (config or [schema]), never from the banks' rows; leaf values and splits are computed from the
noised sums only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.core.seeds import derive_seed
from sampan.errors import ConfigError
from sampan.privacy.calibration import calibrate_noise_multiplier
from sampan.privacy.ledger import Budget, Ledger, PrivacyEvent

__all__ = ["GBDTReleasePlan", "public_edges"]

Persist = Callable[[str, Mapping[str, Any]], None]  # (ledger JSON, audit detail): the recorder's write-ahead charge


def public_edges(names: Sequence[str], n_bins: int, bounds: Mapping[str, Sequence[float]], schema: Any) -> list[
        np.ndarray]:
    """Equal-width interior cut points over each feature's PUBLIC range: `privacy.gbdt.bounds` (name, 'col=*',
    '*'), else the [schema] bounds; one-hot and bool columns cut at 0.5; an int range narrower than the bins is
    cut at the half-integers. A feature without a public range is an error naming it."""
    declared = {c.name: c for c in (getattr(schema, "features", None) or ())}
    edges = []
    for name in names:
        base = name.split("=")[0]
        pair = bounds.get(name) or bounds.get(base + "=*") or (None if "=" in name else bounds.get("*"))
        column = declared.get(name)
        if pair is None and column is not None and column.bounds is not None:
            pair = column.bounds
        if pair is None and ("=" in name or (column is not None and column.kind == "bool")):
            edges.append(np.array([0.5]))
            continue
        if pair is None:
            raise ConfigError(f"privacy.gbdt.bounds has no public range for feature {name!r}: add it (or a '*' "
                              "default) or declare bounds in [schema]; under DP bin edges never come from the banks' "
                              "rows")
        lo, hi = float(pair[0]), float(pair[1])
        if column is not None and column.kind == "int" and hi - lo + 1 <= n_bins:
            edges.append(np.arange(np.floor(lo), np.ceil(hi)) + 0.5)
        else:
            edges.append(np.linspace(lo, hi, n_bins + 1)[1:-1])
    return edges


@dataclass
class GBDTReleasePlan:
    """The coordinator's DP state for one horizontal GBDT run (see the module docstring)."""

    ledger: Ledger
    noise_multiplier: float
    count_noise_multiplier: float
    releases_per_tree: int
    persist: Persist
    bounds: Mapping[str, Sequence[float]]
    clip: tuple[float, float] = (1.0, 0.25)
    edges: list[np.ndarray] = field(default_factory=list)
    features_per_tree: int | None = None
    seed: int = 0

    @classmethod
    def open(cls, config: Any, parties: Sequence[str], persist: Persist, durable: str | None = None,
             seed: int = 0) -> GBDTReleasePlan:
        """The plan of a new run: one budget per bank, the noise ('auto': calibrated to every release the shape
        allows) and the clip (|g| <= 1, h <= 1/4: logistic loss with example weights scaled to at most 1)."""
        privacy, params = config.privacy, config.model.gbdt_params()
        section = privacy.gbdt
        budget = Budget(privacy.epsilon, privacy.delta)
        ledger = Ledger.from_json(durable) if durable else Ledger({p: budget for p in parties},
                                                                   accountant=privacy.accountant)
        per_tree = params.max_depth + 1
        count_z = float(privacy.count_noise_multiplier)

        def plan(z: float) -> list[PrivacyEvent]:
            return [event for p in parties for event in (
                PrivacyEvent(party=p, level="DP1", mechanism="gaussian", noise_multiplier=count_z, count=2,
                             note="row count; row and positive counts"),
                PrivacyEvent(party=p, level="DP1", mechanism="gaussian", noise_multiplier=z,
                             count=params.n_trees * per_tree, note="histograms"))]

        z = section.noise_multiplier
        if z == "auto":
            z = calibrate_noise_multiplier(plan, {p: budget for p in parties}, accountant=privacy.accountant)
        # example weights are scaled to at most 1 by the banks (`grid_gradients`), whatever pos_weight: |g| <= 1,
        # 0 <= h <= 1/4 per row; the banks clip to this anyway
        return cls(ledger, float(z), count_z, per_tree, persist, dict(section.bounds), (1.0, 0.25),
                   features_per_tree=section.features_per_tree, seed=seed)

    def tree_features(self, tree: int, features: int) -> list[int] | None:
        """The features tree `tree` may split on (None: all): `features_per_tree` of them drawn from the run
        seed, public and independent of the data; each release then has sensitivity sqrt(2k), not sqrt(2d)."""
        k = self.features_per_tree
        if k is None or k >= features:
            return None
        rng = np.random.default_rng(derive_seed(self.seed, "hgbdt-features", tree))
        return sorted(int(j) for j in rng.choice(features, size=k, replace=False))

    def released_features(self, features: int) -> int:
        """How many features each histogram release covers."""
        return min(self.features_per_tree or features, features)

    def set_edges(self, names: Sequence[str], n_bins: int, schema: Any) -> None:
        """The bin edges of the run, from public bounds only (`public_edges`)."""
        self.edges = public_edges(names, n_bins, self.bounds, schema)

    def min_child_hessian(self, banks: int, features: int, bins: int) -> float:
        """The least hessian a child may have under DP: three times the noise std of a child's hessian sum (up to
        `bins` noised bins of each of `banks` banks). Why: the split gain G²/(H + l2) of a child whose noised H is
        mostly noise is mostly noise too, and the arg-max over every cut would pick such children (measured: at
        epsilon 4 splits were worse than at epsilon 1). Post-processing of public values (noise, shape, banks)."""
        sigma_h = self.noise_multiplier * math.sqrt(2.0 * features) * self.clip[1]
        return 3.0 * sigma_h * math.sqrt(banks * bins)

    def request(self, *, totals: bool = False, features: list[int] | None = None) -> dict[str, Any]:
        """The ``dp`` settings a histogram request carries (public)."""
        out: dict[str, Any] = {"noise_multiplier": self.noise_multiplier, "clip": list(self.clip), "totals": totals}
        return out if features is None else {**out, "features": list(features)}

    def counts_request(self) -> dict[str, Any]:
        return {"noise_multiplier": self.count_noise_multiplier}

    def tree_fits(self, parties: Sequence[str], tree: int) -> str | None:
        """None if every release of tree `tree` still fits every bank's budget; else the reason (budget stop)."""
        from sampan.privacy.ledger import BudgetExceeded

        try:
            self.ledger.check([self._event(p, self.noise_multiplier, f"tree {tree + 1}", self.releases_per_tree)
                               for p in parties])
        except BudgetExceeded as exc:
            return f"tree {tree + 1} would exceed the budget ({exc}): the model keeps the {tree} trees before it"
        return None

    def charge(self, parties: Sequence[str], what: str, *, counts: bool = False, step: int | None = None) -> None:
        """One release per bank, recorded and persisted before its request leaves (raises BudgetExceeded)."""
        z = self.count_noise_multiplier if counts else self.noise_multiplier
        events = [self._event(p, z, what, 1, step) for p in parties]
        self.ledger.check(events)
        for event in events:
            self.ledger.record(event)
        self.persist(self.ledger.to_json(), {"round": step, "charges": [
            {"level": "DP1", "mechanism": "gaussian", "noise_multiplier": z, "count": 1, "parties": sorted(parties),
             "what": f"horizontal GBDT {what}"}]})

    @staticmethod
    def _event(party: str, z: float, what: str, count: int, step: int | None = None) -> PrivacyEvent:
        return PrivacyEvent(party=party, level="DP1", mechanism="gaussian", noise_multiplier=z, count=count,
                            step=step, note=f"horizontal GBDT {what}")

    def noise(self) -> dict[str, float]:
        return {"GBDT": self.noise_multiplier, "GBDT:counts": self.count_noise_multiplier}
