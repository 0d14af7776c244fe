"""How a party's privacy events compose: dp-accounting RDP curves and PLDs, cached per mechanism.

Split from the ledger so the ledger reads as policy (budgets, checks, persistence) and this module as
arithmetic. States are immutable values: composing candidate events never mutates a party's state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import dp_accounting
import numpy as np
from dp_accounting.pld import privacy_loss_distribution as _pld
from dp_accounting.rdp import rdp_privacy_accountant as _rdp

if TYPE_CHECKING:
    from sampan.privacy.ledger import PrivacyEvent

NEIGHBOR = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
_NEIGHBOR = NEIGHBOR


def _base_dp_event(
    mechanism: str, noise_multiplier: float | None, epsilon: float | None, sampling_rate: float
) -> dp_accounting.DpEvent:
    if mechanism == "laplace":
        assert epsilon is not None
        # dp-accounting's Laplace noise_multiplier is scale / sensitivity = 1 / epsilon.
        return dp_accounting.LaplaceDpEvent(1.0 / epsilon)
    assert noise_multiplier is not None
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    if mechanism == "subsampled_gaussian" and sampling_rate < 1.0:
        return dp_accounting.PoissonSampledDpEvent(sampling_rate, gaussian)
    return gaussian


# --------------------------------------------------------------------------------------------------------
# Composition states. Immutable: ``plus`` returns a new state, so check() never needs to copy anything.


@lru_cache(maxsize=1024)
def _rdp_curve(key: tuple[str, float | None, float | None, float], orders: tuple[float, ...]) -> np.ndarray:
    """RDP of one composition at each order (computing a subsampled-Gaussian curve takes ~20-120 ms)."""
    accountant = dp_accounting.rdp.RdpAccountant(orders, _NEIGHBOR)
    curve = np.asarray(accountant.compose(_base_dp_event(*key)).rdp, dtype=np.float64)
    curve.setflags(write=False)
    return curve


@lru_cache(maxsize=256)
def _pld_of(
    key: tuple[str, float | None, float | None, float], count: int, interval: float
) -> _pld.PrivacyLossDistribution:
    """PLD of ``count`` compositions, built the way dp-accounting's PLDAccountant builds it."""
    mechanism, noise_multiplier, epsilon, q = key
    if mechanism == "laplace":
        assert epsilon is not None
        single = _pld.from_laplace_mechanism(parameter=1.0 / epsilon, value_discretization_interval=interval)
        return single.self_compose(count)
    assert noise_multiplier is not None
    if q == 1.0:  # k Gaussians with sigma compose exactly into one Gaussian with sigma / sqrt(k)
        return _pld.from_gaussian_mechanism(
            standard_deviation=noise_multiplier / math.sqrt(count),
            value_discretization_interval=interval,
            neighboring_relation=_NEIGHBOR,
        )
    single = _pld.from_gaussian_mechanism(
        standard_deviation=noise_multiplier,
        value_discretization_interval=interval,
        sampling_prob=q,
        neighboring_relation=_NEIGHBOR,
    )
    return single.self_compose(count)


class _State:
    """Composed privacy loss of a sequence of events; epsilon is memoised per delta."""

    __slots__ = ("pure_epsilon", "n_events", "_eps")

    def __init__(self, pure_epsilon: float, n_events: int) -> None:
        self.pure_epsilon = pure_epsilon
        self.n_events = n_events
        self._eps: dict[float, float] = {}

    def plus(self, events: Sequence[PrivacyEvent]) -> _State:
        raise NotImplementedError

    def _compute_epsilon(self, delta: float) -> float:
        raise NotImplementedError

    def epsilon(self, delta: float) -> float:
        if self.n_events == 0:
            return 0.0
        eps = self._eps.get(delta)
        if eps is None:
            eps = self._eps[delta] = float(self._compute_epsilon(delta))
        return eps


class _RdpState(_State):
    """RDP curves of all events and of the non-pure events only, plus the sum of pure epsilons."""

    __slots__ = ("orders", "rdp_all", "rdp_approx", "n_approx")

    def __init__(
        self,
        orders: tuple[float, ...],
        rdp_all: np.ndarray,
        rdp_approx: np.ndarray,
        pure_epsilon: float = 0.0,
        n_events: int = 0,
        n_approx: int = 0,
    ) -> None:
        super().__init__(pure_epsilon, n_events)
        self.orders = orders
        self.rdp_all = rdp_all
        self.rdp_approx = rdp_approx
        self.n_approx = n_approx

    @classmethod
    def empty(cls, orders: tuple[float, ...]) -> _RdpState:
        zeros = np.zeros(len(orders))
        return cls(orders, zeros, zeros)

    def plus(self, events: Sequence[PrivacyEvent]) -> _RdpState:
        rdp_all, rdp_approx = self.rdp_all, self.rdp_approx
        pure, n_approx = self.pure_epsilon, self.n_approx
        for event in events:
            curve = event.count * _rdp_curve(event._key(), self.orders)
            rdp_all = rdp_all + curve
            if event.pure:
                assert event.epsilon is not None
                pure += event.count * event.epsilon
            else:
                rdp_approx = rdp_approx + curve
                n_approx += 1
        return _RdpState(self.orders, rdp_all, rdp_approx, pure, self.n_events + len(events), n_approx)

    def _compute_epsilon(self, delta: float) -> float:
        # Two valid (eps, delta) bounds; the smaller one holds. RDP alone is loose for a few pure-eps
        # releases (one Laplace(eps0) would read as slightly more than eps0); basic composition of the
        # pure part with the RDP bound of the rest fixes that.
        eps_all = _rdp.compute_epsilon(self.orders, self.rdp_all, delta)[0]
        eps_approx = _rdp.compute_epsilon(self.orders, self.rdp_approx, delta)[0] if self.n_approx else 0.0
        return min(eps_all, self.pure_epsilon + eps_approx)


class _PldState(_State):
    """One privacy loss distribution of all events (None while empty)."""

    __slots__ = ("interval", "pld", "all_pure")

    def __init__(
        self,
        interval: float,
        pld: _pld.PrivacyLossDistribution | None = None,
        pure_epsilon: float = 0.0,
        n_events: int = 0,
        all_pure: bool = True,
    ) -> None:
        super().__init__(pure_epsilon, n_events)
        self.interval = interval
        self.pld = pld
        self.all_pure = all_pure

    def plus(self, events: Sequence[PrivacyEvent]) -> _PldState:
        pld, pure, all_pure = self.pld, self.pure_epsilon, self.all_pure
        for event in events:
            event_pld = _pld_of(event._key(), event.count, self.interval)
            pld = event_pld if pld is None else pld.compose(event_pld)
            if event.pure:
                assert event.epsilon is not None
                pure += event.count * event.epsilon
            else:
                all_pure = False
        return _PldState(self.interval, pld, pure, self.n_events + len(events), all_pure)

    def _compute_epsilon(self, delta: float) -> float:
        assert self.pld is not None
        eps = self.pld.get_epsilon_for_delta(delta)
        # PLD is tight for mixed events up to discretisation; for pure-only events basic composition is a
        # valid bound too and removes the discretisation excess.
        return min(eps, self.pure_epsilon) if self.all_pure else eps
