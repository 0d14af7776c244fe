"""Differential-privacy noise mechanisms: the only place in Sampan that draws DP noise.

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
exact integer/rational arithmetic and no floating point in any sampling decision.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
from scipy.special import log_ndtr

from sampan.privacy.randomness import secure_generator, secure_uniform_int

__all__ = [
    "DiscreteGaussianMechanism",
    "DiscreteLaplaceMechanism",
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
    dims = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
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


class _GeneratorBits:
    """Exactly uniform integers in [0, n) from a NumPy generator's raw bits (rejection, no modulo bias).

    Pulls 32-bit words in blocks, because a generator call per decision would dominate the sampler's cost.
    """

    _BLOCK = 4096

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._words: list[int] = []

    def _word(self) -> int:
        if not self._words:
            self._words = self._rng.integers(0, 2**32, size=self._BLOCK, dtype=np.uint64).tolist()
        return self._words.pop()

    def _getrandbits(self, k: int) -> int:
        value, have = 0, 0
        while have < k:
            value = (value << 32) | self._word()
            have += 32
        return value >> (have - k)

    def __call__(self, n: int) -> int:
        bits = (n - 1).bit_length()
        if bits == 0:
            return 0
        while True:
            r = self._getrandbits(bits)
            if r < n:
                return r


def _uniform_source(rng: np.random.Generator | None) -> RandBelow:
    return secure_uniform_int if rng is None else _GeneratorBits(rng)


def _bernoulli_exp_neg(num: int, den: int, randbelow: RandBelow) -> bool:
    """Bernoulli(exp(-num/den)) exactly (CKS20 Algorithm 1), for num >= 0, den > 0."""
    while num > den:  # gamma > 1: exp(-gamma) = exp(-1)^floor * exp(-rest)
        if not _bernoulli_exp_neg(1, 1, randbelow):
            return False
        num -= den
    # 0 <= gamma <= 1: K = first k with Bernoulli(gamma / k) = 0; output K odd.
    k = 1
    while randbelow(den * k) < num:
        k += 1
    return k % 2 == 1


def _sample_discrete_laplace(scale_num: int, scale_den: int, randbelow: RandBelow) -> int:
    """One draw with P[x] proportional to exp(-|x| / t), t = scale_num / scale_den (CKS20 Algorithm 2)."""
    t, s = scale_num, scale_den
    while True:
        u = randbelow(t)
        if not _bernoulli_exp_neg(u, t, randbelow):
            continue
        v = 0
        while _bernoulli_exp_neg(1, 1, randbelow):
            v += 1
        y = (u + t * v) // s
        negative = randbelow(2) == 1
        if negative and y == 0:
            continue
        return -y if negative else y


def _sample_discrete_gaussian(sigma2_num: int, sigma2_den: int, randbelow: RandBelow) -> int:
    """One draw with P[x] proportional to exp(-x^2 / (2 sigma^2)), sigma^2 = num/den (CKS20 Algorithm 3)."""
    p, q = sigma2_num, sigma2_den
    t = math.isqrt(p // q) + 1  # floor(sigma) + 1, exactly
    # Acceptance exponent (|y| - sigma^2/t)^2 / (2 sigma^2) = (|y| q t - p)^2 / (2 p q t^2), all integers.
    den = 2 * p * q * t * t
    while True:
        y = _sample_discrete_laplace(t, 1, randbelow)
        if _bernoulli_exp_neg((abs(y) * q * t - p) ** 2, den, randbelow):
            return y


def _integer_array(counts: Any) -> np.ndarray:
    array = np.asarray(counts)
    if array.dtype.kind not in "iu":
        raise TypeError(f"counts must be integer-valued (int or integer array), got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


class _DiscreteMechanism:
    """Shared noise/release for the exact integer mechanisms."""

    def _sampler(self, randbelow: RandBelow) -> Callable[[], int]:  # pragma: no cover - overridden
        raise NotImplementedError

    def noise(self, shape: Shape, rng: np.random.Generator | None = None) -> np.ndarray:
        """int64 noise of ``shape``, sampled exactly.

        Randomness: ``secrets`` (OS CSPRNG) by default; the raw bits of ``rng`` if one is given (tests).
        """
        dims = _shape_tuple(shape)
        draw = self._sampler(_uniform_source(rng))
        size = math.prod(dims)
        flat = np.fromiter((draw() for _ in range(size)), dtype=np.int64, count=size)
        return flat.reshape(dims)

    def release(self, counts: np.ndarray | int, rng: np.random.Generator | None = None) -> np.ndarray | int:
        """Integer ``counts`` plus exact integer noise (int64; an int for a scalar int input)."""
        if isinstance(counts, bool):
            raise TypeError("counts must be integer-valued, got bool")
        array = _integer_array(counts)
        noisy = array + self.noise(array.shape, rng)
        if np.ndim(counts) == 0 and not isinstance(counts, np.ndarray):
            return int(noisy)
        return noisy


@dataclass(frozen=True)
class DiscreteLaplaceMechanism(_DiscreteMechanism):
    """Adds discrete Laplace noise, P[x] proportional to exp(-epsilon |x| / sensitivity), to integers.

    Sensitivity assumption: integer-valued release whose L1 change is at most ``sensitivity`` (an integer)
    when one record changes.
    Privacy guarantee: pure epsilon-DP per release, exactly — sampling uses only integer arithmetic
    (CKS20 Algorithm 2), so there is no floating-point leak. A float ``epsilon`` is replaced by a rational
    ``epsilon_rational <= epsilon`` (up to float rounding of a short decimal such as 0.1 -> 1/10;
    denominator <= MAX_DENOMINATOR, see ``_to_rational``), which is the value actually used and reported;
    a ``Fraction`` is used exactly.
    """

    sensitivity: int
    epsilon: float
    epsilon_rational: Fraction = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensitivity", _positive_int(self.sensitivity, "sensitivity"))
        rational = _to_rational(self.epsilon, "epsilon", round_up=False)
        object.__setattr__(self, "epsilon_rational", rational)
        object.__setattr__(self, "epsilon", float(rational))

    @property
    def scale_rational(self) -> Fraction:
        """Exact scale t = sensitivity / epsilon of the pmf exp(-|x| / t)."""
        return self.sensitivity / self.epsilon_rational

    @property
    def scale(self) -> float:
        return float(self.scale_rational)

    def _sampler(self, randbelow: RandBelow) -> Callable[[], int]:
        t = self.scale_rational
        num, den = t.numerator, t.denominator
        return lambda: _sample_discrete_laplace(num, den, randbelow)

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters for receipts and the privacy ledger (rationals as 'p/q' strings)."""
        return {
            "mechanism": "discrete_laplace",
            "sensitivity_norm": "l1",
            "sensitivity": self.sensitivity,
            "epsilon": self.epsilon,
            "epsilon_rational": str(self.epsilon_rational),
            "delta": 0.0,
            "scale": self.scale,
        }


@dataclass(frozen=True)
class DiscreteGaussianMechanism(_DiscreteMechanism):
    """Adds discrete Gaussian noise, P[x] proportional to exp(-x^2 / (2 sigma^2)) on the integers.

    Sensitivity assumption: integer-valued release whose L2 change is at most ``sensitivity`` (an integer;
    for a scalar count, the largest change of the count) when one record changes.
    Privacy guarantee: rho-zCDP with rho = sensitivity^2 / (2 sigma^2) per release, exactly as for the
    continuous Gaussian (CKS20 Theorem 14); :meth:`epsilon` converts to (epsilon, delta)-DP. Sampling is
    exact (CKS20 Algorithm 3). A float ``sigma`` is replaced by a rational ``sigma_rational >= sigma``
    (up to float rounding of a short decimal; denominator <= MAX_DENOMINATOR), the value actually used
    and reported; a ``Fraction`` is used exactly.
    """

    sensitivity: int
    sigma: float
    sigma_rational: Fraction = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensitivity", _positive_int(self.sensitivity, "sensitivity"))
        rational = _to_rational(self.sigma, "sigma", round_up=True)
        object.__setattr__(self, "sigma_rational", rational)
        object.__setattr__(self, "sigma", float(rational))

    @property
    def rho(self) -> float:
        """zCDP parameter of one release (exact rational arithmetic, then to float)."""
        return float(Fraction(self.sensitivity**2) / (2 * self.sigma_rational**2))

    def epsilon(self, delta: float) -> float:
        """An epsilon with (epsilon, delta)-DP for one release, via the zCDP conversion (valid, not tight)."""
        return zcdp_epsilon(self.rho, delta)

    def _sampler(self, randbelow: RandBelow) -> Callable[[], int]:
        sigma2 = self.sigma_rational**2
        num, den = sigma2.numerator, sigma2.denominator
        return lambda: _sample_discrete_gaussian(num, den, randbelow)

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters for receipts and the privacy ledger (rationals as 'p/q' strings)."""
        return {
            "mechanism": "discrete_gaussian",
            "sensitivity_norm": "l2",
            "sensitivity": self.sensitivity,
            "sigma": self.sigma,
            "sigma_rational": str(self.sigma_rational),
            "noise_multiplier": self.sigma / self.sensitivity,
            "rho": self.rho,
        }
