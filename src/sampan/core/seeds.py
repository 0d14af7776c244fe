"""Deterministic sub-seeds from a run seed (``RunContext.seed``), so a resumed run replays the same randomness.

They drive partitioning, initialisation, party selection and minibatch order, which need
reproducibility, not secrecy. Keys, masks and DP noise never come from here (OS CSPRNG). Here, in the
bottom layer, so workflows below the runtime derive them as the runner does (`sampan.runtime.seeds`).
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["derive_rng", "derive_seed"]


def derive_seed(seed: int, *labels: object) -> int:
    """A 62-bit seed bound to `seed` and the labels (e.g. round number, party name)."""
    digest = hashlib.sha256(repr((int(seed), *map(str, labels))).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2


def derive_rng(seed: int, *labels: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *labels))
