"""Fixed-point arithmetic in the ring Z_2^64 and the local steps of two-party additive sharing.

Why a ring and not a field: NumPy's uint64 arithmetic wraps modulo 2^64 for free, so sharing,
opening and the dealer's correlated randomness are plain vectorised integer operations. A real value
x is held as round(x * 2^f) mod 2^64; additive shares x0 + x1 = x (mod 2^64) with x0 uniform reveal
nothing about x to the holder of either one.

Three tools make low-round secure logistic regression possible:

* **power sharing** (`power_shares`): from a public opening delta = z - a (a uniform, the dealer holds
  shares of a, a^2, ..., a^k) each holder computes shares of z, z^2, ..., z^k locally — any polynomial
  in one round, exactly (no truncation inside the ring);
* **exact truncation** (`truncate_shares`): with a dealer pair (r, floor(r / 2^t), msb(r)) and one
  opening c = x + 2^62 + r, the holders get shares of floor(x / 2^t) up to one unit in the last place,
  for every |x| < 2^62 — no probabilistic wrap-around failure, unlike local share truncation;
* **sigmoid polynomial** (`SIGMOID_POLY`): a least-squares degree-5 fit of the logistic function on
  [-8, 8] whose leading coefficient is positive, so beyond the fit range it pushes logits back instead
  of diverging.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = [
    "RING_BITS", "encode", "decode", "to_signed", "uniform", "SigmoidPoly", "SIGMOID_POLY",
    "power_shares", "poly_shares", "truncate_shares", "TRUNC_OFFSET",
]

RING_BITS = 64
TRUNC_OFFSET = np.uint64(1 << 62)
_U64 = np.uint64


def encode(x: np.ndarray | float, frac_bits: int) -> np.ndarray:
    """round(x * 2^frac_bits) as ring elements (negative values wrap, as two's complement)."""
    scaled = np.rint(np.asarray(x, dtype=np.float64) * float(1 << frac_bits))
    return scaled.astype(np.int64).view(np.uint64)


def to_signed(u: np.ndarray) -> np.ndarray:
    """Ring elements read as signed 64-bit integers."""
    return np.asarray(u, dtype=np.uint64).view(np.int64)


def decode(u: np.ndarray, frac_bits: int) -> np.ndarray:
    """Ring elements back to reals (two's complement, divided by 2^frac_bits)."""
    return to_signed(u).astype(np.float64) / float(1 << frac_bits)


def uniform(rng: np.random.Generator, shape: int | tuple[int, ...]) -> np.ndarray:
    """Uniform ring elements (callers pass a CSPRNG-seeded generator or use the channel PRG)."""
    return rng.integers(0, 1 << 64, size=shape, dtype=np.uint64, endpoint=False)


@dataclass(frozen=True)
class SigmoidPoly:
    """sigma(z) ~ sum_k coef[k] z^k, evaluated on shares of z = Z / 2^in_bits, output at 2^out_bits.

    Integer multipliers M_k = round(coef_k * 2^(out_bits - k * in_bits)) keep every term exact in the
    ring; they need out_bits >= degree * in_bits + precision, which is why the input is coarse (2^-5)
    and partial logits are clipped so |z| <= max_abs_logit keeps every term below 2^62.
    """

    coef: tuple[float, ...]
    in_bits: int = 5
    out_bits: int = 47
    max_abs_logit: float = 32.0
    fit_bound: float = 8.0    # the fit range [-fit_bound, fit_bound]: beyond it the polynomial leaves [0, 1]

    def ring_capacity(self) -> float:
        """The largest |z| (a multiple of 2^-in_bits) whose polynomial terms, label and truncation offset
        stay below 2^62, the range `truncate_shares` is exact on. Beyond it residuals silently wrap."""
        m = [abs(int(v)) for v in self.multipliers().view(np.int64)]

        def fits(units: int) -> bool:
            return sum(mk * units ** k for k, mk in enumerate(m)) + (1 << self.out_bits) < (1 << 62)

        lo, hi = 0, 1 << 20
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        return lo / float(1 << self.in_bits)

    @property
    def degree(self) -> int:
        return len(self.coef) - 1

    def multipliers(self) -> np.ndarray:
        m = [round(c * 2.0 ** (self.out_bits - k * self.in_bits)) for k, c in enumerate(self.coef)]
        return np.array(m, dtype=np.int64).view(np.uint64)

    @functools.cached_property
    def fixed_multipliers(self) -> np.ndarray:
        """`multipliers()`, computed once."""
        return self.multipliers()

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """The same polynomial in floating point (for baselines and tests)."""
        return np.polynomial.polynomial.polyval(np.asarray(z, dtype=np.float64), self.coef)


def _fit_sigmoid(degree: int = 5, lo: float = -8.0, hi: float = 8.0) -> tuple[float, ...]:
    z = np.linspace(lo, hi, 4001)
    coef = np.polynomial.polynomial.polyfit(z, 1.0 / (1.0 + np.exp(-z)), degree)
    coef[2::2] = 0.0  # sigma(z) - 1/2 is odd: drop the even terms the fit leaves as round-off
    return tuple(float(c) for c in coef)


SIGMOID_POLY = SigmoidPoly(_fit_sigmoid())


def power_shares(delta: np.ndarray, a_power_shares: list[np.ndarray], *, holder: int) -> list[np.ndarray]:
    """Shares of z^1..z^k from the public delta = z - a and shares of a^1..a^k.

    z^j = sum_i C(j, i) delta^(j-i) a^i; holder 0 adds the public delta^j term. All mod 2^64, exact.
    """
    k = len(a_power_shares)
    dpow = [np.ones_like(delta)]
    for _ in range(k):
        dpow.append(dpow[-1] * delta)
    out = []
    for j in range(1, k + 1):
        acc = dpow[j].copy() if holder == 0 else np.zeros_like(delta)
        for i in range(1, j + 1):
            acc += _U64(_binom(j, i)) * dpow[j - i] * a_power_shares[i - 1]
        out.append(acc)
    return out


def poly_shares(delta: np.ndarray, a_power_shares: list[np.ndarray], multipliers: np.ndarray, *,
                holder: int) -> np.ndarray:
    """One holder's share of sum_k M_k z^k, in one pass (the hot path of secure LR).

    Regrouping the power expansion by powers of a: sum_k M_k z^k = p(delta) + sum_i a^i c_i(delta) with
    c_i(delta) = sum_{k>=i} M_k C(k, i) delta^(k-i), public polynomials evaluated by Horner's rule.
    """
    degree = len(multipliers) - 1
    m = [int(x) for x in multipliers]
    acc = np.zeros_like(delta)
    for i in range(1, degree + 1):
        coeffs = [_U64(m[k] * _binom(k, i) % (1 << 64)) for k in range(i, degree + 1)]
        if not any(coeffs):
            continue
        c = np.full_like(delta, coeffs[-1])
        for coef in reversed(coeffs[:-1]):
            c = c * delta + coef
        acc += c * a_power_shares[i - 1]
    if holder == 0:
        p = np.full_like(delta, _U64(m[degree]))
        for k in range(degree - 1, -1, -1):
            p = p * delta + _U64(m[k])
        acc += p
    return acc


def _binom(n: int, k: int) -> int:
    from math import comb

    return comb(n, k)


def truncate_shares(c: np.ndarray, r_trunc_share: np.ndarray, r_msb_share: np.ndarray, shift: int,
                    *, holder: int) -> np.ndarray:
    """One holder's share of floor(x / 2^shift), given the opened c = x + 2^62 + r (mod 2^64).

    With x' = x + 2^62 in [0, 2^63): x' = c - r + 2^64 * [msb(r) and not msb(c)], so
    floor(x'/2^t) = floor(c/2^t) - floor(r/2^t) + msb(r)(1 - msb(c)) 2^(64-t) - borrow, borrow in {0,1}.
    The borrow is dropped (one unit in the last place); the 2^62 offset is removed again by holder 0.
    """
    c = np.asarray(c, dtype=np.uint64)
    not_msb_c = (1 - (c >> _U64(63))).astype(np.uint64)
    share = not_msb_c * r_msb_share * (_U64(1) << _U64(64 - shift)) - r_trunc_share
    if holder == 0:
        share = share + (c >> _U64(shift)) - (TRUNC_OFFSET >> _U64(shift))
    return share
