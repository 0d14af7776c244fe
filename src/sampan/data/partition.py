"""Split one table's rows among simulated parties, IID or deliberately skewed.

Simulations of horizontal FL need non-IID splits because that is where FedAvg drifts and FedProx or
robust aggregation earn their keep. Every partitioner returns sorted, disjoint, non-empty index arrays
that together cover every row, so a split can be applied with `PartyData.subset`.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["iid_partition", "dirichlet_label_partition", "quantity_skew_partition"]


def _check_counts(n: int, n_parties: int, min_size: int = 1) -> None:
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if isinstance(n_parties, bool) or int(n_parties) != n_parties or n_parties < 1:
        raise ValueError(f"n_parties must be a positive integer, got {n_parties!r}")
    if isinstance(min_size, bool) or int(min_size) != min_size or min_size < 1:
        raise ValueError(f"min_size must be a positive integer, got {min_size!r}")
    if n < n_parties * min_size:
        raise ValueError(
            f"cannot give {n_parties} parties at least {min_size} row(s) each from {n} rows"
        )


def _check_alpha(alpha: float) -> None:
    real = isinstance(alpha, numbers.Real) and not isinstance(alpha, bool)
    if not (real and np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")


def _split_by_sizes(perm: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    bounds = np.cumsum(sizes)[:-1]
    return [np.sort(part) for part in np.split(perm, bounds)]


def iid_partition(n: int, n_parties: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle and deal rows into near-equal parts (sizes differ by at most one)."""
    _check_counts(n, n_parties)
    return [np.sort(part) for part in np.array_split(rng.permutation(int(n)), int(n_parties))]


def quantity_skew_partition(
    n: int,
    n_parties: int,
    rng: np.random.Generator,
    alpha: float = 1.0,
    min_size: int = 10,
) -> list[np.ndarray]:
    """Party sizes drawn from Dirichlet(alpha); rows assigned at random (labels stay IID).

    Each party first gets ``min_size`` rows and the rest is shared by Dirichlet proportions, so no
    retries are needed. Smaller ``alpha`` means more unequal sizes.
    """
    _check_counts(n, n_parties, min_size)
    _check_alpha(alpha)
    n, n_parties = int(n), int(n_parties)
    shares = rng.dirichlet(np.full(n_parties, float(alpha)))
    sizes = min_size + rng.multinomial(n - n_parties * min_size, shares)
    return _split_by_sizes(rng.permutation(n), sizes)


def dirichlet_label_partition(
    y: np.ndarray,
    n_parties: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 10,
    max_retries: int = 1000,
) -> list[np.ndarray]:
    """Label skew: each class's rows are shared among parties by its own Dirichlet(alpha) draw.

    This is the split of Hsu et al. (2019) used across the FL literature; small ``alpha`` (e.g. 0.1-0.5)
    gives parties very different default rates. Draws are repeated until every party has at least
    ``min_size`` rows, up to ``max_retries`` times.
    """
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {labels.shape}")
    _check_counts(labels.shape[0], n_parties, min_size)
    _check_alpha(alpha)
    if max_retries < 1:
        raise ValueError(f"max_retries must be at least 1, got {max_retries}")
    n_parties = int(n_parties)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for _ in range(max_retries):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_parties)]
        for rows in by_class:
            shares = rng.dirichlet(np.full(n_parties, float(alpha)))
            cuts = (np.cumsum(shares)[:-1] * rows.size).astype(np.int64)
            for k, chunk in enumerate(np.split(rng.permutation(rows), cuts)):
                parts[k].append(chunk)
        sizes = [sum(c.size for c in p) for p in parts]
        if min(sizes) >= min_size:
            return [np.sort(np.concatenate(p)) for p in parts]
    raise ValueError(
        f"no Dirichlet(alpha={alpha}) label split gave all {n_parties} parties at least {min_size} rows "
        f"in {max_retries} tries ({labels.shape[0]} rows); raise alpha, lower min_size or use fewer parties"
    )
