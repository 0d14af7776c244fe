"""Credit-scorecard arithmetic: WOE/IV, monotone binning, points scaling, stability.

Pure functions on counts and coefficients, so the same code serves a pooled scorecard and a federated
one (where the counts come from masked histograms and each party holds its own rows of the table).

Conventions: "event" = default (label 1). WOE_b = ln(share of non-events in b / share of events in b),
so a higher WOE means lower risk; IV = sum_b (nonevent share - event share) * WOE_b.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["woe_iv", "monotone_bins", "risk_direction", "is_monotone", "WoeTable", "ScoreScaling", "psi", "gini",
           "iv_strength"]


def woe_iv(events: np.ndarray, totals: np.ndarray, smoothing: float = 0.5) -> tuple[np.ndarray, float]:
    """WOE per bin and the feature's information value, with additive smoothing of empty cells."""
    events = np.asarray(events, dtype=np.float64)
    non = np.asarray(totals, dtype=np.float64) - events
    e = (np.maximum(events, 0) + smoothing) / (np.maximum(events, 0).sum() + smoothing * len(events))
    ne = (np.maximum(non, 0) + smoothing) / (np.maximum(non, 0).sum() + smoothing * len(non))
    woe = np.log(ne / e)
    return woe, float(np.sum((ne - e) * woe))


def iv_strength(iv: float) -> str:
    """The usual reading of an information value (Siddiqi)."""
    return ("useless" if iv < 0.02 else "weak" if iv < 0.1 else "medium" if iv < 0.3 else
            "strong" if iv < 0.5 else "suspiciously strong")


def risk_direction(events: np.ndarray, totals: np.ndarray) -> float:
    """+1 when the event rate rises with the bin order, -1 when it falls (0: flat): the sign of the row-weighted
    correlation between bin position and event rate, the direction a feature's WOE must follow."""
    tot = np.asarray(totals, dtype=np.float64)
    rate = np.asarray(events, dtype=np.float64) / np.maximum(tot, 1e-12)
    weight = np.maximum(tot, 0.0)
    if len(rate) < 2 or weight.sum() <= 0:
        return 0.0
    pos = np.arange(len(rate), dtype=np.float64)
    mp, mr = np.average(pos, weights=weight), np.average(rate, weights=weight)
    return float(np.sign(np.sum(weight * (pos - mp) * (rate - mr))))


def is_monotone(woe: np.ndarray) -> bool:
    """WOE never rises and never falls both, in bin order (ties allowed): points then follow risk one way."""
    d = np.diff(np.asarray(woe, dtype=np.float64))
    return bool(np.all(d <= 1e-12) or np.all(d >= -1e-12))


def monotone_bins(events: np.ndarray, totals: np.ndarray, *, max_bins: int = 6, min_share: float = 0.05,
                  monotone: bool = True) -> np.ndarray:
    """Group adjacent fine bins: chi-merge until at most `max_bins`, each with `min_share` of the rows, and (with
    `monotone`) the smoothed WOE monotone in the direction of the feature's correlation with the event rate
    (`risk_direction`). Returns fine bin -> group index. Works on the counts already released (exact or noised),
    so it releases nothing new. Why WOE and not the event rate: the scorecard's points follow the smoothed WOE,
    which can reverse a monotone event rate in small bins.
    """
    ev = list(np.asarray(events, dtype=np.float64))
    tot = list(np.asarray(totals, dtype=np.float64))
    groups = [[i] for i in range(len(ev))]
    n = max(sum(tot), 1.0)
    direction = risk_direction(np.asarray(ev), np.asarray(tot)) if monotone else 0.0

    def merge(i: int) -> None:  # merge group i with i+1
        ev[i] += ev.pop(i + 1)
        tot[i] += tot.pop(i + 1)
        groups[i] += groups.pop(i + 1)

    def chi2(i: int) -> float:
        a = np.array([[ev[i], tot[i] - ev[i]], [ev[i + 1], tot[i + 1] - ev[i + 1]]])
        expected = a.sum(1, keepdims=True) * a.sum(0, keepdims=True) / max(a.sum(), 1e-12)
        return float(np.sum((a - expected) ** 2 / np.maximum(expected, 1e-12)))

    while len(groups) > 1:
        small = [i for i in range(len(groups)) if tot[i] < min_share * n]
        # a higher WOE is a lower risk: WOE must fall along the bins where the risk rises (direction +1)
        woe = woe_iv(np.array(ev), np.array(tot))[0]
        bad = [i for i in range(len(groups) - 1) if direction and np.sign(woe[i + 1] - woe[i]) == direction]
        if small:
            i = small[0]
            j = i if i == 0 else (i - 1 if i == len(groups) - 1 or tot[i - 1] <= tot[i + 1] else i)
            merge(min(j, len(groups) - 2))
        elif bad:
            merge(min(bad, key=chi2))
        elif len(groups) > max_bins:
            merge(min(range(len(groups) - 1), key=chi2))
        else:
            break
    mapping = np.empty(len(events), dtype=np.int64)
    for g, members in enumerate(groups):
        mapping[members] = g
    return mapping


@dataclass
class WoeTable:
    """One feature's coarse bins: fine-bin edges, the fine -> coarse map, and WOE per coarse bin."""

    feature: str
    edges: np.ndarray          # fine-bin interior cut points (the owner's)
    mapping: np.ndarray        # fine bin -> coarse bin
    woe: np.ndarray            # per coarse bin
    iv: float
    events: np.ndarray = field(default_factory=lambda: np.zeros(0))
    totals: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        fine = np.searchsorted(self.edges, np.asarray(x, dtype=np.float64), side="left")
        return self.woe[self.mapping[fine]]

    def bin_labels(self) -> list[str]:
        """Human-readable value range of each coarse bin."""
        labels = []
        for g in range(len(self.woe)):
            fine = np.flatnonzero(self.mapping == g)
            lo = -math.inf if fine.min() == 0 else self.edges[fine.min() - 1]
            hi = math.inf if fine.max() >= len(self.edges) else self.edges[fine.max()]
            labels.append(f"({_fmt(lo)}, {_fmt(hi)}]")
        return labels

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "edges": self.edges.tolist(), "mapping": self.mapping.tolist(),
                "woe": self.woe.tolist(), "iv": self.iv}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WoeTable:
        return cls(d["feature"], np.asarray(d["edges"], dtype=float), np.asarray(d["mapping"], dtype=np.int64),
                   np.asarray(d["woe"], dtype=float), float(d["iv"]))


def _fmt(v: float) -> str:
    return "-inf" if v == -math.inf else "inf" if v == math.inf else f"{v:.4g}"


@dataclass(frozen=True)
class ScoreScaling:
    """`base` points at odds `base_odds`:1 (good:bad); `pdo` points double the odds."""

    base: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0

    @property
    def factor(self) -> float:
        return self.pdo / math.log(2)

    @property
    def offset(self) -> float:
        return self.base - self.factor * math.log(self.base_odds)

    def points_from_logit(self, logit_of_default: np.ndarray) -> np.ndarray:
        """Score = offset + factor * ln(odds good) = offset - factor * logit(PD)."""
        return self.offset - self.factor * np.asarray(logit_of_default, dtype=np.float64)


def psi(expected: np.ndarray, actual: np.ndarray, n_bins: int = 10) -> float:
    """Population stability index of `actual` against `expected` (bins at expected's deciles)."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, n_bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, expected), minlength=len(edges) + 1) / len(expected)
    a = np.bincount(np.searchsorted(edges, actual), minlength=len(edges) + 1) / max(len(actual), 1)
    e, a = np.maximum(e, 1e-6), np.maximum(a, 1e-6)
    return float(np.sum((a - e) * np.log(a / e)))


def gini(auc: float) -> float:
    return 2.0 * auc - 1.0
