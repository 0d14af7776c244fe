"""Checks of a secure-aggregation claim from what the verifier's own party sent and what the platform returned.

Why: a platform claiming secure aggregation must put on the wire something statistically independent of the
party's clear update (a masked ring element or ciphertext), and its aggregate must be consistent with a sum
(or mean) of all inputs and with nothing that exposes one input.

Threat model: the verifier runs one party, so it holds the clear update (the kit's tap) and the bytes that
left the party (decoded into the vector the platform receives). A curious server sees only `sent`; if `sent`
is correlated with `clear`, or not uniform over the ring, the server learns the update.

What a check can and cannot say: a test that finds no dependence is not a proof of independence; it is
evidence at the stated sample size. `is_masked` returns `masked=False` whenever dependence is detected and
`conclusive=False` when there are too few values to tell. `consistent_with_sum` can only separate candidates
that differ on the given inputs (identical inputs make sum and each input proportional: reported).

May import: numpy, scipy, sampan.errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from sampan.audit.intervals import as_matrix, as_vector, json_float
from sampan.errors import DataError

__all__ = ["MaskingResult", "SumConsistencyResult", "consistent_with_sum", "is_masked"]

_MIN_VALUES = 32  # fewer values: the tests below have too little power to say "masked"


@dataclass(frozen=True)
class MaskingResult:
    """masked: no dependence found (and ring values uniform); p-values say how strong each test was."""

    masked: bool
    conclusive: bool
    n: int
    pearson_r: float
    pearson_p: float
    spearman_rho: float
    spearman_p: float
    equal_fraction: float  # fraction of positions where sent == clear (as encoded)
    uniformity_p: float | None  # chi-square on the top bits of ring elements; None for float payloads
    uniformity_bins: int | None
    alpha: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able figures for a report."""
        return {k: (json_float(v) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _centered(ring: np.ndarray, bits: int) -> np.ndarray:
    """Ring elements in [0, 2^bits) read as two's-complement signed values (as float64)."""
    if bits == 64:
        return ring.view(np.int64).astype(np.float64)  # exact for small magnitudes (no 2^64 - x rounding)
    signed = ring.astype(np.int64)
    signed[signed >= (1 << (bits - 1))] -= 1 << bits
    return signed.astype(np.float64)


def _ring(values: Any, bits: int) -> np.ndarray:
    if not 1 <= bits <= 64:
        raise DataError(f"ring_bits must be in 1..64, got {bits}")
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise DataError(f"sent values must be integers (ring elements) when ring_bits is given, got {arr.dtype}")
    arr = arr.reshape(-1)
    ring = arr.astype(np.uint64) if bits == 64 else (arr.astype(np.int64) % (1 << bits)).astype(np.uint64)
    return ring


def _top_bits_chi2(ring: np.ndarray, bits: int) -> tuple[float, int]:
    """Chi-square p-value that the top log2(bins) bits are uniform; bins keep ≥ 5 expected per bin."""
    top = max(1, min(8, bits, int(np.floor(np.log2(max(2, ring.size // 5))))))
    buckets = (ring >> np.uint64(bits - top)).astype(np.int64)
    counts = np.bincount(buckets, minlength=1 << top)
    return float(stats.chisquare(counts).pvalue), 1 << top


def _correlation(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0, 1.0, 0.0, 1.0  # a constant carries no linear information about the other
    pr = stats.pearsonr(a, b)
    sr = stats.spearmanr(a, b)
    return float(pr.statistic), float(pr.pvalue), float(sr.statistic), float(sr.pvalue)


def is_masked(
    sent: Any, clear: Any, *, ring_bits: int | None = None, scale: float | None = None, alpha: float = 0.01,
) -> MaskingResult:
    """Is what the party sent independent of its clear update?

    `sent`: the payload as the platform received it (ring elements as integers with `ring_bits`, or floats).
    `clear`: the party's clear update, same length. With `ring_bits`, `scale` (the fixed-point factor) lets
    the equality test compare round(clear·scale) with the ring element read as a signed value.
    Masked = neither Pearson nor Spearman correlation is significant at `alpha`, the ring values' top bits
    pass a chi-square uniformity test at `alpha`, and at most 1% of positions equal the clear value."""
    if not 0.0 < alpha < 1.0:
        raise DataError(f"alpha must be in (0, 1), got {alpha}")
    c = as_vector(clear, "clear update")
    notes: list[str] = []
    uni_p: float | None = None
    bins: int | None = None
    if ring_bits is not None:
        ring = _ring(sent, ring_bits)
        s = _centered(ring, ring_bits)
        uni_p, bins = _top_bits_chi2(ring, ring_bits)
        encoded = np.rint(c * scale) if scale is not None else c
    else:
        s, encoded = as_vector(sent, "sent payload"), c
    if s.size != c.size:
        raise DataError(f"sent payload has {s.size} values but the clear update has {c.size}")
    equal = float(np.mean(np.isclose(s, encoded, rtol=1e-9, atol=0.0)))
    pr, pp, sr, sp = _correlation(s, c)
    conclusive = c.size >= _MIN_VALUES
    dependent = (pp < alpha) or (sp < alpha) or equal > 0.01 or (uni_p is not None and uni_p < alpha)
    if not conclusive:
        notes.append(f"only {c.size} values (< {_MIN_VALUES}): too few to call the payload masked.")
    if np.ptp(c) == 0:
        notes.append("the clear update is constant: correlation tests cannot see dependence.")
        conclusive = False
    if ring_bits is None:
        notes.append("float payload: no uniformity test; only correlation and equality were checked.")
    return MaskingResult(
        masked=bool(conclusive and not dependent), conclusive=conclusive, n=int(c.size), pearson_r=pr,
        pearson_p=pp, spearman_rho=sr, spearman_p=sp, equal_fraction=equal, uniformity_p=uni_p,
        uniformity_bins=bins, alpha=alpha, notes=notes,
    )


@dataclass(frozen=True)
class SumConsistencyResult:
    """Which functions of the inputs the platform's aggregate matches (relative error ≤ tolerance)."""

    consistent: bool  # matches the expected aggregate and no single input
    expected: str
    matches: list[str]
    relative_errors: dict[str, float]
    distinguishable: bool  # the expected aggregate differs from every single input on these inputs
    tolerance: float
    n_inputs: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able figures for a report."""
        return {k: (json_float(v) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b)) / max(float(np.linalg.norm(b)), 1e-12)


def consistent_with_sum(
    result: Any, inputs: Any, *, weights: Any = None, expected: str = "sum", tolerance: float = 1e-6,
) -> SumConsistencyResult:
    """Does `result` equal the sum / mean / weighted mean of `inputs` (rows), and nothing that exposes one?

    Candidates compared: sum, mean, weighted_mean (with `weights`), median, each input alone, and the sum
    without each input (a dropped party). `expected` names the one the protocol promises."""
    r = as_vector(result, "aggregate result")
    X = as_matrix(inputs, "inputs")
    if X.shape[1] != r.size:
        raise DataError(f"aggregate has {r.size} values but each input has {X.shape[1]}")
    if tolerance <= 0:
        raise DataError(f"tolerance must be positive, got {tolerance}")
    n = X.shape[0]
    cands: dict[str, np.ndarray] = {"sum": X.sum(axis=0), "mean": X.mean(axis=0), "median": np.median(X, axis=0)}
    if weights is not None:
        w = as_vector(weights, "weights")
        if w.size != n or w.sum() <= 0 or w.min() < 0:
            raise DataError(f"weights must be {n} non-negative numbers with a positive sum")
        cands["weighted_mean"] = (w[:, None] * X).sum(axis=0) / w.sum()
    for i in range(n):
        cands[f"input[{i}]"] = X[i]
        if n > 1:
            cands[f"sum_without[{i}]"] = X.sum(axis=0) - X[i]
    if expected not in cands:
        raise DataError(f"expected must be one of sum, mean, weighted_mean (with weights), got {expected!r}")
    errors = {name: _rel_err(r, v) for name, v in cands.items()}
    matches = [name for name, e in errors.items() if e <= tolerance]
    singles = [f"input[{i}]" for i in range(n)]
    distinguishable = all(_rel_err(cands[expected], cands[s]) > 10 * tolerance for s in singles)
    notes: list[str] = []
    if not distinguishable:
        notes.append("on these inputs the expected aggregate equals a single input: use distinct inputs.")
    consistent = expected in matches and not any(s in matches for s in singles) and distinguishable
    return SumConsistencyResult(
        consistent=consistent, expected=expected, matches=matches, relative_errors=errors,
        distinguishable=distinguishable, tolerance=tolerance, n_inputs=n, notes=notes,
    )
