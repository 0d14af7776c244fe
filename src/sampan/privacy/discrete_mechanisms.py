"""Exact discrete DP mechanisms for integer releases (counts, histograms): discrete Laplace and discrete Gaussian.

Why apart from `sampan.privacy.mechanisms`: these sample with integer and rational arithmetic only (Canonne,
Kamath & Steinke 2020, Algorithms 1-3), so no floating-point pattern leaks (Mironov 2012); their samplers
are the subtle part and are tested on their own. Parameters and `describe()` follow the same rules as the
continuous mechanisms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from sampan.privacy.mechanisms import RandBelow, Shape, _positive_int, _shape_tuple, _to_rational, zcdp_epsilon
from sampan.privacy.randomness import secure_uniform_int

__all__ = ["DiscreteGaussianMechanism", "DiscreteLaplaceMechanism"]

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
