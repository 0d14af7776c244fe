"""Checks of a secure-aggregation claim from what the verifier's own party sent and what the platform returned.

Why: a platform claiming secure aggregation must put on the wire something statistically independent of the
party's clear update (a masked ring element or ciphertext), and its aggregate must be consistent with a sum
(or mean) of all inputs and with nothing that exposes one input.

Threat model: the verifier runs one party, so it holds the clear update (the kit's tap) and the bytes that
left the party (decoded into the vector the platform receives). A curious server sees only `sent`; if `sent`
is correlated with `clear`, or not uniform over the ring, the server learns the update.

Ring payloads (`ring_bits` and `scale` given). The verifier knows both sides, so it computes the mask itself,
m = sent − encode(clear) mod 2^bits with encode(x) = round(x·scale), and tests what a uniform, fresh mask must
satisfy: every bit position of m balanced (exact binomial tests), the low, a middle and the top window of bits
of m uniform (chi-square), no more zeros of m (= values sent in the clear) than chance allows (n·2^-bits), and
no correlation between sent and clear. With several rounds (2-D arrays, rounds × values) it also rejects
repeated mask values across the rounds and round-to-round mask differences that are (nearly) constant across
coordinates (a pad reused with a per-round shift). The R16 review found a top-byte-only pad, a reused shifted
pad and ~1% clear coordinates passing the earlier top-bits-only test (R16-AUDIT-1, -2, -12).

Float payloads cannot be uniformly masked, and any server-known bijection of the update (a fixed permutation,
a fixed pad, a known scale) passes every test that looks at one party's values: `is_masked` never calls a float
payload masked (`conclusive=False`); it can only find a leak (`leak_found`): correlation, equal values, or a
payload whose values are the update's values reordered (R16-AUDIT-3).

What a check can and cannot say: a test that finds no dependence is not a proof of independence; it is
evidence at the stated sample size. A server-known bijection of the ring element (e.g. multiplication by a
fixed odd constant) passes any such test. `masked` is True only when every test passes; the tests share
`alpha` (Bonferroni), so a genuine uniform mask is called unmasked with probability ≤ alpha. One round cannot
show reuse across rounds: pass every round. `consistent_with_sum` can only separate candidates that differ on
the given inputs (identical inputs make sum and each input proportional, a tiny input makes the sum equal the
sum without it: both reported as not distinguishable).

May import: numpy, scipy, sampan.errors.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from sampan.audit.intervals import as_matrix, as_vector, json_float
from sampan.errors import DataError

__all__ = ["MaskingResult", "SumConsistencyResult", "consistent_with_sum", "is_masked"]

_MIN_VALUES = 32  # fewer values: the tests below have too little power to say "masked"
_ALL_PAIRS_MAX_ROUNDS = 20  # more rounds: compare consecutive rounds and each round with the first only
_EXPECTED = ("sum", "mean", "weighted_mean")


@dataclass(frozen=True)
class MaskingResult:
    """masked: a conclusive ring payload passed every test; leak_found: some test found dependence."""

    masked: bool
    conclusive: bool
    n: int  # values in all (values per round × rounds)
    pearson_r: float
    pearson_p: float
    spearman_rho: float
    spearman_p: float
    equal_fraction: float  # fraction of positions where sent == clear (as encoded): zeros of the ring mask
    uniformity_p: float | None  # chi-square on the top bits of the sent ring elements; None for float payloads
    uniformity_bins: int | None
    alpha: float
    notes: list[str] = field(default_factory=list)
    leak_found: bool = False  # True: the payload depends on the update (the server can learn from it)
    rounds: int = 1
    mask_bit_p: float | None = None  # ring: smallest per-bit balance p-value of the mask × bits (Bonferroni)
    mask_window_p: float | None = None  # ring: chi-square on low / middle / top bit windows of the mask (Bonferroni)
    mask_zero_p: float | None = None  # ring: P[this many zeros of the mask or more] for a uniform mask
    reuse_p: float | None = None  # ring, several rounds: repeated mask values or near-constant round differences
    test_level: float | None = None  # alpha / number of tests: each test rejects below it

    def to_dict(self) -> dict[str, Any]:
        """JSON-able figures for a report."""
        return {k: (json_float(v) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _bitmask(bits: int) -> np.uint64:
    return np.uint64((1 << bits) - 1)


def _centered(ring: np.ndarray, bits: int) -> np.ndarray:
    """Ring elements in [0, 2^bits) read as two's-complement signed values (as float64): sign-extend by shifts."""
    shift = np.uint64(64 - bits)
    return ((ring << shift).view(np.int64) >> np.int64(64 - bits)).astype(np.float64)


def _ring(values: Any, bits: int) -> np.ndarray:
    """The payload reduced mod 2^bits in uint64 (negative integers wrap as two's complement), as rounds × values."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise DataError(f"sent values must be integers (ring elements) when ring_bits is given, got {arr.dtype}")
    arr = arr[None, :] if arr.ndim == 1 else arr
    if arr.ndim != 2 or arr.size == 0:
        raise DataError(f"sent payload must be a non-empty 1-D or 2-D (rounds × values) array, got {arr.shape}")
    return arr.astype(np.uint64) & _bitmask(bits)


def _encode(clear: np.ndarray, scale: float, bits: int) -> np.ndarray:
    """round(clear·scale) in Z_2^bits (two's complement), the way a fixed-point secure aggregation encodes it."""
    scaled = np.rint(clear * scale)
    if not np.all(np.abs(scaled) < 2.0**63):
        raise DataError(f"clear update × scale {scale:g} does not fit 64-bit integers: wrong scale?")
    return scaled.astype(np.int64).astype(np.uint64) & _bitmask(bits)


def _top_bits_chi2(ring: np.ndarray, bits: int) -> tuple[float, int]:
    """Chi-square p-value that the top log2(bins) bits are uniform; bins keep ≥ 5 expected per bin."""
    top = max(1, min(8, bits, int(np.floor(np.log2(max(2, ring.size // 5))))))
    buckets = (ring >> np.uint64(bits - top)).astype(np.int64)
    counts = np.bincount(buckets, minlength=1 << top)
    return float(stats.chisquare(counts).pvalue), 1 << top


def _bit_balance_p(ring: np.ndarray, bits: int) -> float:
    """Exact two-sided binomial test that each bit position is 1 half the time; Bonferroni over the bits."""
    n = ring.size
    ones = np.array([int(((ring >> np.uint64(j)) & np.uint64(1)).sum()) for j in range(bits)])
    p = np.minimum(1.0, 2.0 * np.minimum(stats.binom.cdf(ones, n, 0.5), stats.binom.sf(ones - 1, n, 0.5)))
    return float(min(1.0, bits * float(p.min())))


def _window_chi2(ring: np.ndarray, bits: int) -> float:
    """Chi-square uniformity of the low, a middle and the top window of bits; Bonferroni over the windows."""
    width = max(1, min(8, bits, int(np.floor(np.log2(max(2, ring.size // 5))))))
    starts = sorted({0, (bits - width) // 2, bits - width})
    ps = []
    for s in starts:
        vals = ((ring >> np.uint64(s)) & _bitmask(width)).astype(np.int64)
        ps.append(float(stats.chisquare(np.bincount(vals, minlength=1 << width)).pvalue))
    return min(1.0, len(starts) * min(ps))


def _reuse_p(mask: np.ndarray, bits: int) -> float:
    """Across rounds (rows): repeated mask values (birthday-bound rare for a fresh uniform mask), and round
    differences m_t − m_t' that are (nearly) constant across coordinates (a reused pad shifted per round)."""
    rounds, n = mask.shape
    total = mask.size
    ring_size = 2.0**bits
    dups = total - int(np.unique(mask).size)
    if total / ring_size < 1e-3:
        expected = total * (total - 1) / (2.0 * ring_size)
    else:
        expected = total - ring_size * -math.expm1(total * math.log1p(-1.0 / ring_size))
    p_dup = float(stats.poisson.sf(dups - 1, max(expected, 1e-300))) if dups else 1.0
    if rounds <= _ALL_PAIRS_MAX_ROUNDS:
        pairs = {(a, b) for a in range(rounds) for b in range(a + 1, rounds)}
    else:
        pairs = {(t - 1, t) for t in range(1, rounds)} | {(0, t) for t in range(1, rounds)}
    p_diff = 1.0
    if n >= 2:
        for a, b in pairs:
            d = (mask[b] - mask[a]) & _bitmask(bits)
            p_diff = min(p_diff, _bit_balance_p((d[1:] - d[0]) & _bitmask(bits), bits))
        p_diff = min(1.0, len(pairs) * p_diff)
    return min(1.0, 2.0 * min(p_dup, p_diff))


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

    `sent`: the payload as the platform received it: ring elements (integers) with `ring_bits` and `scale`
    (the fixed-point factor: encode(x) = round(x·scale) mod 2^ring_bits), or floats. `clear`: the party's clear
    update, the same shape; 1-D for one round, 2-D (rounds × values) for several rounds of the same party (only
    then can reuse of a mask across rounds be seen). Masked = a ring payload with at least 32 values whose mask
    passes every test in the module doc, each at alpha / (number of tests). A float payload is never masked."""
    if isinstance(alpha, bool) or not (isinstance(alpha, numbers.Real) and 0.0 < alpha < 1.0):
        raise DataError(f"alpha must be in (0, 1), got {alpha}")
    C = as_matrix(clear, "clear update")
    notes: list[str] = []
    tests: dict[str, float] = {}
    uni_p = bit_p = win_p = zero_p = reuse = None
    bins: int | None = None
    if ring_bits is not None:
        if not isinstance(ring_bits, numbers.Integral) or isinstance(ring_bits, bool) or not 1 <= ring_bits <= 64:
            raise DataError(f"ring_bits must be an integer in 1..64, got {ring_bits!r}")
        bits = int(ring_bits)
        ring = _ring(sent, bits)
        if not isinstance(scale, numbers.Real) or isinstance(scale, bool) or not (math.isfinite(scale) and scale > 0):
            raise DataError(f"a ring payload needs scale, the positive fixed-point factor, to compute the mask; "
                            f"got {scale!r}")
        if ring.shape != C.shape:
            raise DataError(f"sent payload has {ring.size} values but the clear update has {C.size} "
                            f"(shapes {ring.shape} and {C.shape})")
        mask = (ring - _encode(C, float(scale), bits)) & _bitmask(bits)
        s = _centered(ring.reshape(-1), bits)
        zeros = int((mask == 0).sum())
        equal = zeros / mask.size
        uni_p, bins = _top_bits_chi2(ring.reshape(-1), bits)
        bit_p, win_p = _bit_balance_p(mask.reshape(-1), bits), _window_chi2(mask.reshape(-1), bits)
        zero_p = float(stats.binom.sf(zeros - 1, mask.size, 2.0**-bits)) if zeros else 1.0
        tests.update(uniformity=uni_p, mask_bits=bit_p, mask_windows=win_p, mask_zeros=zero_p)
        if C.shape[0] > 1:
            reuse = tests["reuse"] = _reuse_p(mask, bits)
        else:
            notes.append("one round: reuse of a mask across rounds cannot be seen (pass rounds × values).")
    else:
        S = as_matrix(sent, "sent payload")
        if S.shape != C.shape:
            raise DataError(f"sent payload has {S.size} values but the clear update has {C.size} "
                            f"(shapes {S.shape} and {C.shape})")
        s = S.reshape(-1)
        equal = float(np.mean(np.isclose(s, C.reshape(-1), rtol=1e-9, atol=0.0)))
    c = C.reshape(-1)
    pr, pp, sr, sp = _correlation(s, c)
    tests.update(pearson=pp, spearman=sp)
    level = alpha / len(tests)
    leak = any(p < level for p in tests.values())
    conclusive = c.size >= _MIN_VALUES
    if not conclusive:
        notes.append(f"only {c.size} values (< {_MIN_VALUES}): too few to call the payload masked.")
    if ring_bits is None:
        reordered = float(np.mean(np.isclose(np.sort(s), np.sort(c), rtol=1e-9, atol=0.0)))
        if equal > 0.01 or reordered > 0.5:
            leak = True
        if reordered > 0.5 and equal <= 0.01:
            notes.append("the payload's values are the update's values reordered: a server-known permutation "
                         "undoes it.")
        notes.append("float payload: no uniformity test; only correlation, equality and reordering were checked. "
                     "A float payload cannot be shown masked (a fixed pad, permutation or scale passes every "
                     "test): masked is False, conclusive is False.")
        conclusive = False
    elif np.ptp(c) == 0:
        notes.append("the clear update is constant: the correlation tests cannot see dependence (mask tests can).")
    return MaskingResult(
        masked=bool(conclusive and not leak), conclusive=conclusive, n=int(c.size), pearson_r=pr,
        pearson_p=pp, spearman_rho=sr, spearman_p=sp, equal_fraction=equal, uniformity_p=uni_p,
        uniformity_bins=bins, alpha=alpha, notes=notes, leak_found=bool(leak), rounds=int(C.shape[0]),
        mask_bit_p=bit_p, mask_window_p=win_p, mask_zero_p=zero_p, reuse_p=reuse, test_level=level,
    )


@dataclass(frozen=True)
class SumConsistencyResult:
    """Which functions of the inputs the platform's aggregate matches (relative error ≤ tolerance)."""

    consistent: bool  # matches the expected aggregate, no single input and no sum without one input
    expected: str
    matches: list[str]
    relative_errors: dict[str, float]
    distinguishable: bool  # the expected aggregate differs from every single input and every sum without one
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
    without each input (a dropped party). `expected` names the one the protocol promises: sum, mean or
    weighted_mean. A dropped party whose input is tiny (e.g. a near-converged update) makes the sum equal the
    sum without it: then the inputs cannot tell, and the result is not called consistent (R16-AUDIT-11)."""
    if expected not in _EXPECTED:
        raise DataError(f"expected must be one of sum, mean, weighted_mean (with weights), got {expected!r}")
    if not (isinstance(tolerance, numbers.Real) and math.isfinite(tolerance) and tolerance > 0):
        raise DataError(f"tolerance must be a positive finite number, got {tolerance}")
    r = as_vector(result, "aggregate result")
    X = as_matrix(inputs, "inputs")
    if X.shape[1] != r.size:
        raise DataError(f"aggregate has {r.size} values but each input has {X.shape[1]}")
    n = X.shape[0]
    cands: dict[str, np.ndarray] = {"sum": X.sum(axis=0), "mean": X.mean(axis=0), "median": np.median(X, axis=0)}
    if weights is not None:
        w = as_vector(weights, "weights")
        if w.size != n or w.sum() <= 0 or w.min() < 0:
            raise DataError(f"weights must be {n} non-negative numbers with a positive sum")
        cands["weighted_mean"] = (w[:, None] * X).sum(axis=0) / w.sum()
    if expected not in cands:
        raise DataError(f"expected must be one of sum, mean, weighted_mean (with weights), got {expected!r}")
    for i in range(n):
        cands[f"input[{i}]"] = X[i]
        if n > 1:
            cands[f"sum_without[{i}]"] = X.sum(axis=0) - X[i]
    errors = {name: _rel_err(r, v) for name, v in cands.items()}
    matches = [name for name, e in errors.items() if e <= tolerance]
    exposing = [name for name in cands if name.startswith(("input[", "sum_without["))]
    distinguishable = all(_rel_err(cands[expected], cands[s]) > 10 * tolerance for s in exposing)
    notes: list[str] = []
    if not distinguishable:
        close = [s for s in exposing if _rel_err(cands[expected], cands[s]) <= 10 * tolerance]
        notes.append(f"on these inputs the expected aggregate is within 10× the tolerance of {', '.join(close)}: "
                     "a single input or a dropped party cannot be told apart; use distinct, non-negligible inputs.")
    consistent = expected in matches and not any(s in matches for s in exposing) and distinguishable
    return SumConsistencyResult(
        consistent=consistent, expected=expected, matches=matches, relative_errors=errors,
        distinguishable=distinguishable, tolerance=tolerance, n_inputs=n, notes=notes,
    )
