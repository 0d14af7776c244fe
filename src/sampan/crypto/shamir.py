"""Shamir secret sharing of 32-byte secrets over GF(2^521 - 1): the building block of dropout recovery.

Why this field: 2^521 - 1 is a Mersenne prime larger than any 256-bit secret, so a 32-byte key or
seed is one field element and needs no byte-wise splitting. A secret s is hidden as the constant term
of a random polynomial f of degree t - 1 (coefficients from `secrets`); share j is (x_j, f(x_j)) with
x_j a distinct non-zero public index. Any t shares give s back by Lagrange interpolation at 0; any
t - 1 shares are independent of s (information-theoretically).

Shares travel as 66-byte big-endian field elements; their x is implicit (the holder's public index).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from functools import lru_cache

from sampan.errors import ProtocolError

__all__ = ["PRIME", "SHARE_BYTES", "ShamirError", "split", "combine", "lagrange_at_zero",
           "share_to_bytes", "share_from_bytes"]

PRIME = (1 << 521) - 1
SHARE_BYTES = 66  # ceil(521 / 8)
SECRET_BYTES = 32


class ShamirError(ProtocolError, ValueError):
    """Too few shares, duplicate or out-of-range indices, or a malformed share."""


def split(secret: bytes, threshold: int, xs: Sequence[int]) -> dict[int, int]:
    """Shares of `secret` (32 bytes) for the holders at indices `xs`; any `threshold` of them recover it."""
    if len(secret) != SECRET_BYTES:
        raise ShamirError(f"secrets are {SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= len(xs):
        raise ShamirError(f"threshold {threshold} must be between 1 and the number of holders {len(xs)}")
    if len(set(xs)) != len(xs) or any(not 0 < x < PRIME for x in xs):
        raise ShamirError("share indices must be distinct and non-zero")
    coefficients = [int.from_bytes(secret, "big")] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares = {}
    for x in xs:
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        shares[x] = y
    return shares


@lru_cache(maxsize=256)
def lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    """Coefficients l_j with f(0) = sum_j l_j f(x_j) for any polynomial of degree < len(xs).

    Cached: in a round every secret of a full graph is rebuilt from the same holders, so this O(t^2)
    step is paid once.
    """
    if len(set(xs)) != len(xs) or any(not 0 < x < PRIME for x in xs):
        raise ShamirError("share indices must be distinct and non-zero")
    out = []
    for j, xj in enumerate(xs):
        num, den = 1, 1
        for m, xm in enumerate(xs):
            if m != j:
                num = num * xm % PRIME
                den = den * (xm - xj) % PRIME
        out.append(num * pow(den, -1, PRIME) % PRIME)
    return tuple(out)


def combine(shares: Mapping[int, int], threshold: int) -> bytes:
    """The 32-byte secret from at least `threshold` shares {index: value} (the lowest indices are used)."""
    if len(shares) < threshold:
        raise ShamirError(f"need {threshold} shares to reconstruct, have {len(shares)}")
    xs = tuple(sorted(shares)[:threshold])
    value = sum(coef * shares[x] for coef, x in zip(lagrange_at_zero(xs), xs, strict=True)) % PRIME
    if value >= 1 << (8 * SECRET_BYTES):
        raise ShamirError("shares are inconsistent: the reconstructed value is not a 32-byte secret")
    return value.to_bytes(SECRET_BYTES, "big")


def share_to_bytes(value: int) -> bytes:
    return value.to_bytes(SHARE_BYTES, "big")


def share_from_bytes(raw: bytes) -> int:
    if len(raw) != SHARE_BYTES:
        raise ShamirError(f"a share is {SHARE_BYTES} bytes, got {len(raw)}")
    value = int.from_bytes(raw, "big")
    if value >= PRIME:
        raise ShamirError("share value outside the field")
    return value
