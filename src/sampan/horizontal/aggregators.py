"""Aggregators combine party updates (model deltas) into one.

`WeightedMean` keeps a single running sum, so coordinator memory stays at one model whatever the
number of parties. The robust aggregators must see every update at once (a median needs all values),
so they buffer; choose them for small consortia where Byzantine robustness matters more than scale.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from sampan.privacy.wrappers import UpdateSum


class Aggregator(ABC):
    name: str
    streaming: bool = False

    def __init__(self) -> None:
        self._count = 0

    def reset(self) -> None:
        self._count = 0
        self._reset()

    def add(self, update: np.ndarray, weight: float) -> None:
        if weight <= 0:
            raise ValueError(f"update weight must be positive, got {weight}")
        if not np.all(np.isfinite(update)):
            raise ValueError("update contains NaN or infinite values")
        self._count += 1
        self._add(np.asarray(update, dtype=np.float64), float(weight))

    @property
    def count(self) -> int:
        return self._count

    def result(self) -> np.ndarray:
        if self._count == 0:
            raise ValueError("no updates to aggregate (every selected party failed or none was selected)")
        return self._result()

    @abstractmethod
    def _reset(self) -> None: ...

    @abstractmethod
    def _add(self, update: np.ndarray, weight: float) -> None: ...

    @abstractmethod
    def _result(self) -> np.ndarray: ...


class WeightedMean(Aggregator):
    """FedAvg's example-weighted mean, as one running sum."""

    name = "mean"
    streaming = True

    def _reset(self) -> None:
        self._sum: np.ndarray | None = None
        self._weight = 0.0

    def _add(self, update: np.ndarray, weight: float) -> None:
        if self._sum is None:
            self._sum = update * weight
        else:
            self._sum += update * weight
        self._weight += weight

    def _result(self) -> np.ndarray:
        assert self._sum is not None
        return self._sum / self._weight


class _Buffered(Aggregator):
    def _reset(self) -> None:
        self._updates: list[np.ndarray] = []
        self._weights: list[float] = []

    def _add(self, update: np.ndarray, weight: float) -> None:
        self._updates.append(update)
        self._weights.append(weight)

    def _stack(self) -> np.ndarray:
        return np.vstack(self._updates)


class CoordinateMedian(_Buffered):
    """Per-coordinate median (Yin et al. 2018): robust to < 50% arbitrary updates."""

    name = "median"

    def _result(self) -> np.ndarray:
        return np.median(self._stack(), axis=0)


class TrimmedMean(_Buffered):
    """Per-coordinate mean after dropping the `trim_fraction` largest and smallest values."""

    name = "trimmed_mean"

    def __init__(self, trim_fraction: float = 0.1) -> None:
        super().__init__()
        if not 0 <= trim_fraction < 0.5:
            raise ValueError(f"trim_fraction must be in [0, 0.5), got {trim_fraction}")
        self.trim_fraction = trim_fraction

    def _result(self) -> np.ndarray:
        stacked = np.sort(self._stack(), axis=0)
        k = int(np.floor(self.trim_fraction * len(stacked)))
        return stacked[k:len(stacked) - k].mean(axis=0)


class Krum(_Buffered):
    """(Multi-)Krum (Blanchard et al. 2017): average the m updates closest to their n-f-2 neighbours."""

    name = "krum"

    def __init__(self, byzantine: int = 1, multi: int = 1) -> None:
        super().__init__()
        if byzantine < 0 or multi < 1:
            raise ValueError("krum needs byzantine >= 0 and multi >= 1")
        self.byzantine, self.multi = byzantine, multi

    def _result(self) -> np.ndarray:
        stacked = self._stack()
        n = len(stacked)
        neighbours = n - self.byzantine - 2
        if neighbours < 1:
            raise ValueError(
                f"krum with byzantine={self.byzantine} needs at least {self.byzantine + 3} updates, got {n}"
            )
        sq = np.sum(stacked**2, axis=1)
        dist = np.maximum(sq[:, None] + sq[None, :] - 2 * stacked @ stacked.T, 0.0)
        np.fill_diagonal(dist, np.inf)
        scores = np.sort(dist, axis=1)[:, :neighbours].sum(axis=1)
        chosen = np.argsort(scores, kind="stable")[: min(self.multi, n)]
        return stacked[chosen].mean(axis=0)


def make_aggregator(name: str, *, trim_fraction: float = 0.1, byzantine: int = 1, multi: int = 1) -> Aggregator:
    if name == "mean":
        return WeightedMean()
    if name == "median":
        return CoordinateMedian()
    if name == "trimmed_mean":
        return TrimmedMean(trim_fraction)
    if name == "krum":
        return Krum(byzantine, multi)
    raise ValueError(f"unknown aggregator {name!r}; expected mean, median, trimmed_mean or krum")


class StrategyAggregation:
    """The strategy's own aggregation (weighted mean or a robust aggregator) behind `UpdateAggregation`."""

    def __init__(self, aggregator: Aggregator) -> None:
        self.aggregator = aggregator
        self.aggregator.reset()
        self._sum: UpdateSum | None = None

    def add(self, update: np.ndarray, weight: float, indicator: float) -> None:
        self.aggregator.add(update, weight)

    def add_sum(self, total: UpdateSum) -> None:  # SecAgg: Σ (n_i/N)·Δ_i and Σ n_i/N (mean aggregator only)
        self._sum = total

    def result(self) -> np.ndarray:
        if self._sum is not None:
            return self._sum.head / self._sum.weight
        return self.aggregator.result()
