"""Randomness for DP noise and masks: OS-CSPRNG-seeded generators, and an explicitly marked seeded one.

Every noise draw and mask in Sampan comes from :func:`secure_generator` (or, for the exact discrete
samplers, from :func:`secure_uniform_int`). :func:`seeded_generator` exists only so that tests can
reproduce a stream; it returns a :class:`SeededGenerator`, so code that records a run can tell
(:func:`is_seeded`) and mark the run as reproducible-not-private.
"""

from __future__ import annotations

import secrets

import numpy as np

__all__ = [
    "SeededGenerator",
    "is_seeded",
    "secure_generator",
    "secure_uniform_int",
    "seeded_generator",
]

_SEED_BITS = 256


class SeededGenerator(np.random.Generator):
    """A NumPy Generator whose seed someone chose: reproducible, therefore never for production noise.

    A distinct type (rather than a flag) so the mark survives being passed around and shows in reprs.
    """


def secure_generator() -> np.random.Generator:
    """A fresh PCG64DXSM generator seeded with 256 bits from the OS CSPRNG (``secrets``).

    Why: noise whose seed an adversary can guess is no noise at all; each call gives an independent,
    unpredictable stream, so two mechanisms never share noise by accident.
    """
    return np.random.Generator(np.random.PCG64DXSM(secrets.randbits(_SEED_BITS)))


def seeded_generator(seed: int) -> SeededGenerator:
    """A reproducible generator for TESTS ONLY — never for production noise or masks.

    Anyone who knows ``seed`` can subtract the noise. The result is a :class:`SeededGenerator` so a run
    that uses it can be recognised (:func:`is_seeded`) and marked as such in its receipt.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return SeededGenerator(np.random.PCG64DXSM(int(seed)))


def is_seeded(rng: np.random.Generator | None) -> bool:
    """True if ``rng`` came from :func:`seeded_generator` (so the run must be marked reproducible)."""
    return isinstance(rng, SeededGenerator)


def secure_uniform_int(n: int) -> int:
    """An exactly uniform integer in ``[0, n)`` from the OS CSPRNG, for the exact discrete samplers.

    ``secrets.randbelow`` works on Python integers of any size with rejection sampling, so there is no
    modulo bias and no floating point.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return secrets.randbelow(int(n))
