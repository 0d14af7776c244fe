"""Differential-privacy noise mechanisms: with `sampan.privacy.discrete_mechanisms`, the only place in Sampan
that draws DP noise.

DP1 (party statistics), DP2 (DP-SGD) and DP3 (aggregator noise) wrap these; protocols never call a
noise function directly. Every mechanism:

- validates its parameters at construction (``ValueError`` naming the bad parameter);
- draws from :func:`~sampan.privacy.randomness.secure_generator` unless a generator is passed
  (tests pass :func:`~sampan.privacy.randomness.seeded_generator`);
- states its sensitivity assumption and privacy guarantee in its docstring;
- ``describe()`` returns a JSON-able dict for receipts and the privacy ledger.

Continuous mechanisms (:class:`GaussianMechanism`, :class:`LaplaceMechanism`) are for real-valued
releases such as model updates. For integer releases (counts, histograms) use the exact discrete
mechanisms: textbook floating-point Laplace/Gaussian samples leak through the pattern of representable
doubles (Mironov 2012), whereas :class:`DiscreteLaplaceMechanism` and
:class:`DiscreteGaussianMechanism` implement Canonne, Kamath & Steinke (2020) Algorithms 1-3 with
exact integer/rational arithmetic and no floating point in any sampling decision; they live in
`sampan.privacy.discrete_mechanisms` (their exact samplers are a module of their own).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy.special import log_ndtr

from sampan.privacy.randomness import secure_generator

__all__ = [
    "GaussianMechanism",
    "LaplaceMechanism",
    "NoiseMechanism",
    "MAX_DENOMINATOR",
    "analytic_gaussian_delta",
    "classic_gaussian_sigma",
    "zcdp_epsilon",
]

Shape = int | tuple[int, ...]
RandBelow = Callable[[int], int]

#: Float privacy parameters of the discrete mechanisms become rationals with at most this denominator.
MAX_DENOMINATOR = 10**6
# A float within a few ulps of its small-denominator rational is taken to *be* that rational (0.1 means
# 1/10, not 100001/1000000): the float is only the rounded spelling of the decimal the caller wrote.
_SAME_NUMBER_RTOL = Fraction(1, 2**50)


@runtime_checkable
class NoiseMechanism(Protocol):
    """What the DP1/DP2/DP3 wrappers rely on: draw noise, add it, and describe it for the ledger."""

    def noise(self, shape: Shape, rng: np.random.Generator | None = None) -> np.ndarray: ...

    def release(self, value: Any, rng: np.random.Generator | None = None) -> Any: ...

    def describe(self) -> dict[str, Any]: ...


# --------------------------------------------------------------------------------------------------
# Validation helpers


def _positive_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    as_float = float(value)
    if not math.isfinite(as_float) or as_float <= 0.0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return as_float


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _probability(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    as_float = float(value)
    if not 0.0 < as_float < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return as_float


def _non_negative_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    as_float = float(value)
    if not math.isfinite(as_float) or as_float < 0.0:
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return as_float


def _shape_tuple(shape: Shape) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, int | numbers.Integral) else tuple(shape)
    if any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0 for d in dims):
        raise ValueError(f"shape must be a non-negative int or a tuple of them, got {shape!r}")
    return tuple(int(d) for d in dims)


def _to_rational(value: Any, name: str, *, round_up: bool) -> Fraction:
    """A privacy parameter as an exact rational, rounded towards *more* privacy.

    ``Fraction`` inputs are used exactly. Other numbers go through ``limit_denominator(MAX_DENOMINATOR)``;
    if that lands on the less-private side (sigma down, epsilon up) by more than a few ulps, we round to
    the safe side on the grid ``k / MAX_DENOMINATOR`` instead, so the stated guarantee holds.
    """
    _positive_real(value, name)
    if isinstance(value, Fraction):
        return value
    exact = Fraction(int(value)) if isinstance(value, numbers.Integral) else Fraction(float(value))
    approx = exact.limit_denominator(MAX_DENOMINATOR)
    unsafe = approx < exact if round_up else approx > exact
    if unsafe and abs(approx - exact) > exact * _SAME_NUMBER_RTOL:
        scaled = exact * MAX_DENOMINATOR
        approx = Fraction(math.ceil(scaled) if round_up else math.floor(scaled), MAX_DENOMINATOR)
    if approx <= 0:
        raise ValueError(
            f"{name}={value!r} is too small to represent with denominator <= {MAX_DENOMINATOR}; "
            "pass a fractions.Fraction to use it exactly"
        )
    return approx


# --------------------------------------------------------------------------------------------------
# Analytic Gaussian mechanism (Balle & Wang 2018)


def analytic_gaussian_delta(epsilon: float, sigma: float, sensitivity: float = 1.0) -> float:
    """Exact delta of one Gaussian release: Phi(D/2s - e s/D) - e^e Phi(-D/2s - e s/D).

    This is the tight privacy profile (Balle & Wang 2018, Theorem 8), so calibrating on it wastes no
    budget. Computed in log space (``log_ndtr``) so it stays accurate for tiny delta and large epsilon.
    """
    ratio = sensitivity / sigma
    a = ratio / 2.0 - epsilon / ratio
    b = -ratio / 2.0 - epsilon / ratio
    log_pa = float(log_ndtr(a))
    log_pb = float(log_ndtr(b))
    # Phi(a) - e^eps Phi(b) = Phi(a) * (1 - exp(eps + log Phi(b) - log Phi(a))), without cancellation.
    return max(0.0, math.exp(log_pa) * -math.expm1(min(0.0, epsilon + log_pb - log_pa)))


def classic_gaussian_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """The textbook sigma = sqrt(2 ln(1.25/delta)) D / epsilon (Dwork & Roth, valid only for epsilon < 1).

    Kept as a reference point: the analytic calibration must never be looser than this.
    """
    return math.sqrt(2.0 * math.log(1.25 / delta)) * sensitivity / epsilon


def _bisect_decreasing(f: Callable[[float], float], target: float, lo: float, hi: float, *, log: bool) -> float:
    """Smallest x (up to float resolution) with f(x) <= target for a decreasing f; returns the safe end.

    Brackets by doubling/halving, then bisects; returning ``hi`` means the answer always satisfies the
    condition, so rounding errs towards more privacy.
    """
    for _ in range(2000):
        if f(hi) <= target:
            break
        lo, hi = hi, hi * 2.0
    else:  # pragma: no cover - only for absurd inputs
        raise ValueError("could not bracket the privacy condition")
    while log and f(lo) <= target and lo > 1e-300:
        lo, hi = lo / 2.0, lo
    for _ in range(400):
        mid = math.sqrt(lo * hi) if log and lo > 0.0 else (lo + hi) / 2.0
        if not lo < mid < hi:
            break
        if f(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi


def zcdp_epsilon(rho: float, delta: float) -> float:
    """Smallest epsilon such that rho-zCDP implies (epsilon, delta)-DP, by a valid conversion.

    Uses Canonne-Kamath-Steinke 2020 Corollary 13 (any alpha > 1 gives a valid bound; we take the best on
    a fine grid) and never returns more than Bun & Steinke's rho + 2 sqrt(rho ln(1/delta)).
    """
    rho = _non_negative_real(rho, "rho")
    delta = _probability(delta, "delta")
    if rho == 0.0:
        return 0.0
    standard = rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))
    alpha = 1.0 + np.geomspace(1e-6, 1e7, 20_000)
    eps = alpha * rho + (math.log(1.0 / delta) + alpha * np.log1p(-1.0 / alpha) - np.log(alpha - 1.0)) / (alpha - 1.0)
    return max(0.0, min(standard, float(np.min(eps))))


# --------------------------------------------------------------------------------------------------
# Continuous mechanisms


@dataclass(frozen=True)
class GaussianMechanism:
    """Adds N(0, sigma^2) noise to each coordinate of a real-valued release.

    Sensitivity assumption: ``sensitivity`` bounds the L2 norm of the change in the released vector when
    one record (or one party's update, for DP3) changes.
    Privacy guarantee: one release is (epsilon, delta)-DP for every pair on the exact analytic curve
    :func:`analytic_gaussian_delta` (see :meth:`epsilon` / :meth:`delta`), and rho-zCDP with
    rho = sensitivity^2 / (2 sigma^2) for composition in the ledger.
    """

    sensitivity: float
    sigma: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensitivity", _positive_real(self.sensitivity, "sensitivity"))
        object.__setattr__(self, "sigma", _positive_real(self.sigma, "sigma"))

    @classmethod
    def from_noise_multiplier(cls, sensitivity: float, z: float) -> GaussianMechanism:
        """sigma = z * sensitivity — the DP-SGD/DP3 parameterisation, where the accountant works in z."""
        sensitivity = _positive_real(sensitivity, "sensitivity")
        z = _positive_real(z, "noise_multiplier")
        return cls(sensitivity, z * sensitivity)

    @classmethod
    def calibrate(cls, sensitivity: float, epsilon: float, delta: float) -> GaussianMechanism:
        """Smallest sigma giving (epsilon, delta)-DP for one release, by the analytic Gaussian mechanism.

        Bisection on the exact condition of Balle & Wang (2018); tighter than the classic formula and
        valid for any epsilon > 0 (the classic one is only proven for epsilon < 1).
        """
        sensitivity = _positive_real(sensitivity, "sensitivity")
        epsilon = _positive_real(epsilon, "epsilon")
        delta = _probability(delta, "delta")
        # delta depends on sigma only through u = sigma / sensitivity; solve in u for scale-free accuracy.
        u = _bisect_decreasing(lambda s: analytic_gaussian_delta(epsilon, s, 1.0), delta, 0.5, 1.0, log=True)
        return cls(sensitivity, u * sensitivity)

    @property
    def noise_multiplier(self) -> float:
        """z = sigma / sensitivity: what DP-SGD accountants (RDP/PLD) take as input."""
        return self.sigma / self.sensitivity

    @property
    def rho(self) -> float:
        """zCDP parameter of one release, sensitivity^2 / (2 sigma^2); composes by addition."""
        return 1.0 / (2.0 * self.noise_multiplier**2)

    def delta(self, epsilon: float) -> float:
        """Exact delta of one release at ``epsilon`` (analytic Gaussian condition)."""
        epsilon = _non_negative_real(epsilon, "epsilon")
        return analytic_gaussian_delta(epsilon, self.sigma, self.sensitivity)

    def epsilon(self, delta: float) -> float:
        """Smallest epsilon with (epsilon, delta)-DP for one release: the exact inverse of :meth:`calibrate`."""
        delta = _probability(delta, "delta")
        if self.delta(0.0) <= delta:
            return 0.0
        return _bisect_decreasing(self.delta, delta, 0.0, 1.0, log=False)

    def noise(self, shape: Shape, rng: np.random.Generator | None = None) -> np.ndarray:
        """float64 N(0, sigma^2) noise of ``shape``; a fresh CSPRNG-seeded generator unless ``rng`` is given."""
        rng = secure_generator() if rng is None else rng
        return rng.normal(0.0, self.sigma, size=_shape_tuple(shape)).astype(np.float64, copy=False)

    def release(self, value: np.ndarray | float, rng: np.random.Generator | None = None) -> np.ndarray | float:
        """``value`` plus fresh noise, same shape (a float for a scalar input)."""
        return _add_real_noise(self, value, rng)

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters for receipts and the privacy ledger."""
        return {
            "mechanism": "gaussian",
            "sensitivity_norm": "l2",
            "sensitivity": self.sensitivity,
            "sigma": self.sigma,
            "noise_multiplier": self.noise_multiplier,
            "rho": self.rho,
        }


@dataclass(frozen=True)
class LaplaceMechanism:
    """Adds Laplace(0, b) noise with b = sensitivity / epsilon to each coordinate.

    Sensitivity assumption: ``sensitivity`` bounds the L1 norm of the change in the released vector when
    one record changes.
    Privacy guarantee: pure epsilon-DP per release (delta = 0). Floating-point caveat: for integer
    releases prefer :class:`DiscreteLaplaceMechanism`.
    """

    sensitivity: float
    epsilon: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensitivity", _positive_real(self.sensitivity, "sensitivity"))
        object.__setattr__(self, "epsilon", _positive_real(self.epsilon, "epsilon"))

    @property
    def scale(self) -> float:
        """Laplace scale b = sensitivity / epsilon."""
        return self.sensitivity / self.epsilon

    def noise(self, shape: Shape, rng: np.random.Generator | None = None) -> np.ndarray:
        """float64 Laplace(0, b) noise of ``shape``; CSPRNG-seeded generator unless ``rng`` is given."""
        rng = secure_generator() if rng is None else rng
        return rng.laplace(0.0, self.scale, size=_shape_tuple(shape)).astype(np.float64, copy=False)

    def release(self, value: np.ndarray | float, rng: np.random.Generator | None = None) -> np.ndarray | float:
        """``value`` plus fresh noise, same shape (a float for a scalar input)."""
        return _add_real_noise(self, value, rng)

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters for receipts and the privacy ledger."""
        return {
            "mechanism": "laplace",
            "sensitivity_norm": "l1",
            "sensitivity": self.sensitivity,
            "epsilon": self.epsilon,
            "delta": 0.0,
            "scale": self.scale,
        }


def _add_real_noise(
    mechanism: GaussianMechanism | LaplaceMechanism, value: np.ndarray | float, rng: np.random.Generator | None
) -> np.ndarray | float:
    array = np.asarray(value, dtype=np.float64)
    noisy = array + mechanism.noise(array.shape, rng)
    if np.ndim(value) == 0 and not isinstance(value, np.ndarray):
        return float(noisy)
    return noisy


# --------------------------------------------------------------------------------------------------
# Exact discrete samplers (Canonne, Kamath & Steinke 2020). Every decision is an integer comparison
# against an exactly uniform integer; rationals are carried as (numerator, denominator) pairs.


