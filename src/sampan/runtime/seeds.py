"""Deterministic sub-seeds from a run seed, so a resumed run replays exactly the same randomness.

These seeds drive data partitioning, initialisation and minibatch order, which need reproducibility,
not secrecy. Keys, masks and DP noise never come from here: they use the operating system's CSPRNG.
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np


def fresh_seed() -> int:
    """A new run seed from the OS CSPRNG (fits a signed 64-bit database column)."""
    return secrets.randbits(62)


def derive_seed(seed: int, *labels: object) -> int:
    """A 62-bit seed bound to `seed` and the labels (e.g. round number, party name)."""
    digest = hashlib.sha256(repr((int(seed), *map(str, labels))).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2


def derive_rng(seed: int, *labels: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *labels))
