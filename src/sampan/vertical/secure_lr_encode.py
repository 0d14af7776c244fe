"""Secure vertical LR, a party's features in compact fixed point: encoded once over row blocks.

Why apart and why int32: the protocol multiplies features at 2^-FEATURE_BITS in the ring Z_2^64, but a
standardised feature is clipped to +-FEATURE_CLIP (8), so round(x * 2^16) fits in 20 bits. Holding the
table as int32 and widening one minibatch to ring elements when it is used (`_TrainState.fixed_rows`)
gives exactly the ring values the protocol had before (same rounding), at half the bytes of a uint64 copy
and without the float64 copies of the standardised table. Encoding runs over the fixed row blocks of
`sampan.compute`, so a party's engine (local or its own cluster) runs it unchanged, with identical bytes.

What each role learns: nothing; this is a party-local transformation of its own columns.
"""

from __future__ import annotations

import numpy as np

from sampan.compute import current_engine, reduce_in_order, row_blocks
from sampan.vertical.model import FEATURE_CLIP, LocalScaler
from sampan.vertical.secure_lr import FEATURE_BITS

__all__ = ["E_CHUNK_ROWS", "column_moments", "encode_rows", "fit_scaler"]

# Rows of E = X - U (and of the validation Ev) per sealed message (`vlr.e_chunk`): 65,536 rows x 31 columns
# is ~16 MB, so neither the sender, the relay nor the receiver ever holds a whole-table envelope (four
# transient copies of it).
E_CHUNK_ROWS = 1 << 16

assert FEATURE_CLIP * (1 << FEATURE_BITS) < (1 << 31), "clipped features at FEATURE_BITS must fit int32"


def _encode_block(X: np.ndarray, start: int, stop: int, rows: np.ndarray, scaler: LocalScaler,
                  with_ones: bool) -> np.ndarray:
    """One block: standardise, clip, round to 2^-FEATURE_BITS (as `ring.encode`), as int32."""
    Z = np.rint(scaler.transform(X[rows[start:stop]]) * float(1 << FEATURE_BITS)).astype(np.int32)
    if with_ones:  # the bank's intercept column
        Z = np.hstack([Z, np.full((len(Z), 1), 1 << FEATURE_BITS, dtype=np.int32)])
    return Z


def encode_rows(X: np.ndarray, rows: np.ndarray, scaler: LocalScaler, *, with_ones: bool) -> np.ndarray:
    """The standardised rows `rows` of X at 2^-FEATURE_BITS as one int32 array (plus a ones column for the bank)."""
    rows = np.asarray(rows, dtype=np.int64)
    engine = current_engine()
    parts = engine.map_blocks(_encode_block, engine.put(X), row_blocks(len(rows)), rows, scaler, with_ones)
    if not parts:
        return np.zeros((0, X.shape[1] + (1 if with_ones else 0)), dtype=np.int32)
    out = np.empty((len(rows), parts[0].shape[1]), dtype=np.int32)
    lo = 0
    parts.reverse()
    while parts:  # free each block as it is placed
        part = parts.pop()
        out[lo:lo + len(part)] = part
        lo += len(part)
    return out


def _sum_block(X: np.ndarray, start: int, stop: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # float64 per block whatever X holds: float32 accumulators put a column of 10,000 +- 1 off by sd's
    block = X[rows[start:stop]].astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.isfinite(block).all(axis=0), block.sum(axis=0)


def _square_block(X: np.ndarray, start: int, stop: int, rows: np.ndarray, mean: np.ndarray) -> np.ndarray:
    # float64 squares: a float32 column of spread 1e19 squares past float32's range, not float64's
    with np.errstate(over="ignore", invalid="ignore"):
        return np.square(X[rows[start:stop]].astype(np.float64) - mean).sum(axis=0)


def column_moments(X: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(finite, mean, std) of each column of X[rows], over fixed row blocks: no copy of the rows is made.

    Two passes (mean, then squared deviations), as `np.std` computes them, in float64 whatever X holds (a
    float32 table gets `LocalScaler.fit`'s statistics, as a float64 one); partial sums are added in block
    order (`reduce_in_order`), so any engine gives the same bytes. `finite` is False for a column holding a
    NaN or an infinity; mean and std are then meaningless for it.
    """
    rows = np.asarray(rows, dtype=np.int64)
    engine, blocks, n = current_engine(), row_blocks(len(rows)), max(len(rows), 1)
    data = engine.put(X)
    if not blocks:
        zeros = np.zeros(X.shape[1])
        return np.ones(X.shape[1], dtype=bool), zeros, zeros
    firsts = engine.map_blocks(_sum_block, data, blocks, rows)
    finite = np.logical_and.reduce([f for f, _ in firsts])
    with np.errstate(over="ignore", invalid="ignore"):
        mean = reduce_in_order([s for _, s in firsts]) / n
        squares = reduce_in_order(engine.map_blocks(_square_block, data, blocks, rows, mean))
        return finite, mean, np.sqrt(squares / n)


def fit_scaler(X: np.ndarray, rows: np.ndarray) -> LocalScaler:
    """`LocalScaler.fit(X[rows])` without materialising X[rows] (the same statistics up to summation order)."""
    if not len(rows):
        return LocalScaler.fit(X[:0])
    _, mean, scale = column_moments(X, rows)
    return LocalScaler(mean, np.where(scale > 1e-12, scale, 1.0))
