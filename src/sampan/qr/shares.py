"""Vector Shamir sharing over the prime field GF(2^127 - 1), with fixed-point encoding: the arithmetic of
distributed verification (`sampan.qr.distributed`).

Why Shamir over a prime field and not additive sharing over the ring Z_2^64 (`sampan.crypto.ring`):
the verdict needs a QUORUM, t of S sites. Additive shares need every holder; a t-of-S quorum with
additive shares needs replicated sharing (each of the C(S, t-1) subsets gets its own additive part, so a
site stores C(S-1, t-1) vector parts: 6 for 3-of-5, 35 for 4-of-8) and a more delicate combiner. Shamir
gives each site ONE vector, any t of them reconstruct, and - the property the protocol relies on -
reconstruction is LINEAR, so a site can apply a public-to-it linear map (w . x + b) to its share and the
combiner interpolates the partial results exactly as it would interpolate x. Interpolation needs a field,
hence a prime modulus.

Why 2^127 - 1: a Mersenne prime, so values are exact Python integers with no overflow to worry about; the
fixed-point product of a feature (`X_FRAC_BITS` fractional bits, |x| < 2^40) and a weight (`W_FRAC_BITS`,
|w| < 2^40) summed over up to 2^20 coordinates stays far below p / 2, the signed range. Values are encoded
with `sampan.crypto.ring.encode` (round(v * 2^f), two's complement) and lifted into the field.

Security: t >= 2 is enforced (t = 1 is a degree-0 polynomial: every share IS the secret). For a degree t-1
polynomial per coordinate with uniform coefficients (`secrets.randbelow`), any
t-1 shares are uniform and independent of the secret (perfect secrecy); any t reconstruct it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from functools import lru_cache
from itertools import combinations

import numpy as np

from sampan.crypto.ring import encode as ring_encode
from sampan.crypto.ring import to_signed
from sampan.errors import ProtocolError

__all__ = ["PRIME", "X_FRAC_BITS", "W_FRAC_BITS", "MAX_ABS", "ShareError", "encode_vector", "encode_weights",
           "decode_value", "share_vector", "interpolate_at", "reconstruct", "consistent_subset",
           "to_words", "from_words"]

PRIME = (1 << 127) - 1
X_FRAC_BITS = 20   # features: 2^-20 resolution
W_FRAC_BITS = 30   # weights (the keyed template is +-1/n, n ~ 2000: needs the finer grid)
MAX_ABS = float(1 << 40)
_MASK64 = (1 << 64) - 1


class ShareError(ProtocolError, ValueError):
    """A vector that cannot be encoded or shared, or shares that do not reconstruct (the message says which)."""


def _encode(values: np.ndarray, frac_bits: int, field: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ShareError(f"field {field!r} must be a non-empty 1-D vector, got shape {v.shape}")
    if not np.isfinite(v).all() or np.abs(v).max() >= MAX_ABS:
        raise ShareError(f"field {field!r} must be finite with |value| < 2^40")
    signed = to_signed(ring_encode(v, frac_bits))
    return np.array([int(s) % PRIME for s in signed.tolist()], dtype=object)


def encode_vector(x: np.ndarray) -> np.ndarray:
    """A feature vector as field elements (object array of Python ints), `X_FRAC_BITS` fixed point."""
    return _encode(x, X_FRAC_BITS, "features")


def encode_weights(w: np.ndarray) -> np.ndarray:
    """A weight vector as field elements, `W_FRAC_BITS` fixed point."""
    return _encode(w, W_FRAC_BITS, "weights")


def encode_bias(b: float) -> int:
    """A bias at the scale of a product (X_FRAC_BITS + W_FRAC_BITS), so it adds to w . x directly."""
    if not np.isfinite(b) or abs(b) >= MAX_ABS:
        raise ShareError("field 'bias' must be finite with |value| < 2^40")
    return round(b * float(1 << W_FRAC_BITS)) * (1 << X_FRAC_BITS) % PRIME


def decode_value(v: int, frac_bits: int = X_FRAC_BITS + W_FRAC_BITS) -> float:
    """A field element read as a signed fixed-point number; refuses one outside the safe range (wrap-around)."""
    v %= PRIME
    signed = v - PRIME if v > PRIME // 2 else v
    if abs(signed) >= 1 << 110:
        raise ShareError("reconstructed value is outside the fixed-point range: the partial results are "
                         "inconsistent or come from different requests")
    return signed / float(1 << frac_bits)


def share_vector(secret: np.ndarray, threshold: int, xs: Sequence[int]) -> dict[int, np.ndarray]:
    """Shares {x_j: vector} of an encoded vector; any `threshold` reconstruct it, fewer learn nothing."""
    if not 2 <= threshold <= len(xs):
        raise ShareError(f"threshold {threshold} must be between 2 and the number of sites {len(xs)} (with 1, "
                         f"every share would be the secret itself)")
    if len(set(xs)) != len(xs) or any(not 0 < x < PRIME for x in xs):
        raise ShareError("site indices must be distinct and non-zero")
    n = len(secret)
    coefficients = [np.array([secrets.randbelow(PRIME) for _ in range(n)], dtype=object)
                    for _ in range(threshold - 1)]
    out = {}
    for x in xs:
        acc = np.zeros(n, dtype=object)
        for c in reversed(coefficients):  # Horner, constant term last
            acc = (acc + c) * x % PRIME
        out[x] = (acc + secret) % PRIME
    return out


@lru_cache(maxsize=512)
def _basis_at(xs: tuple[int, ...], z: int) -> tuple[int, ...]:
    """Lagrange basis values l_j(z) for the nodes xs."""
    if len(set(xs)) != len(xs):
        raise ShareError("duplicate site indices")
    out = []
    for j, xj in enumerate(xs):
        num, den = 1, 1
        for m, xm in enumerate(xs):
            if m != j:
                num = num * (z - xm) % PRIME
                den = den * (xj - xm) % PRIME
        out.append(num * pow(den, -1, PRIME) % PRIME)
    return tuple(out)


def interpolate_at(points: Mapping[int, int], z: int) -> int:
    """The value at z of the polynomial of degree < len(points) through `points` {x: y}."""
    xs = tuple(sorted(points))
    return sum(c * points[x] for c, x in zip(_basis_at(xs, z), xs, strict=True)) % PRIME


def reconstruct(points: Mapping[int, int], threshold: int) -> int:
    """The secret (value at 0) from the first `threshold` points by index."""
    if len(points) < threshold:
        raise ShareError(f"need {threshold} partial results, have {len(points)}")
    xs = sorted(points)[:threshold]
    return interpolate_at({x: points[x] for x in xs}, 0)


def consistent_subset(points: Mapping[int, int], threshold: int) -> tuple[set[int], bool]:
    """(the indices agreeing with the best degree < t polynomial, whether that set is unique and a majority).

    All points on one polynomial -> (all, True). Otherwise every t-subset's polynomial is tried (S is small)
    and the largest agreeing set is returned; it identifies the culprits only when it is the unique largest
    and the disagreeing points are at most (m - t) / 2 (the Reed-Solomon unique-decoding radius)."""
    xs = sorted(points)
    best: list[set[int]] = []
    for subset in combinations(xs, threshold):
        base = {x: points[x] for x in subset}
        agree = {x for x in xs if x in base or interpolate_at(base, x) == points[x] % PRIME}
        if len(agree) == len(xs):
            return agree, True
        if agree not in best:
            best.append(agree)
    best.sort(key=len, reverse=True)
    top = best[0]
    unique = (len(best) == 1 or len(best[1]) < len(top)) and 2 * (len(xs) - len(top)) <= len(xs) - threshold
    return top, unique


def to_words(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Field elements as (high, low) uint64 arrays, for sealed transport."""
    ints = [int(a) for a in v.tolist()]
    return (np.array([a >> 64 for a in ints], dtype=np.uint64), np.array([a & _MASK64 for a in ints], dtype=np.uint64))


def from_words(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Inverse of `to_words`; refuses values outside the field."""
    if hi.shape != lo.shape or hi.ndim != 1:
        raise ShareError("share words must be two 1-D arrays of one length")
    out = np.array([(int(h) << 64) | int(low) for h, low in zip(hi.tolist(), lo.tolist(), strict=True)], dtype=object)
    if any(v >= PRIME for v in out.tolist()):
        raise ShareError("share value outside the field")
    return out
