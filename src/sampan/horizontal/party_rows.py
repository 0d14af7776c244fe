"""A party's rows as its model sees them (missing cells filled, standardised), computed per block, never whole.

Why: a horizontal party used to keep imputed and standardised float64 copies of its whole train and test
matrices (and made a third, permuted copy per epoch), 3-4x its table in memory. `ScaledRows` holds only the
party's own matrix (float32 or float64) and the request's fill values and scaler; indexing it gives the
selected rows in float64, filled and standardised exactly as the whole-matrix code did (elementwise, so the
bytes are the same). Full-table passes (moments, scores) run over fixed row blocks through `sampan.compute`,
so they give the same bytes on one process and on a party's cluster.

What each role learns: nothing; this is local arithmetic inside one party.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sampan.compute import Engine, current_engine, reduce_in_order, row_blocks
from sampan.data.missing import MissingColumn, check_fill_values
from sampan.privacy.mods import clipped_moments

__all__ = ["ScaledRows", "block_moments", "block_scores"]


class ScaledRows:
    """Rows of ``X`` (optionally only those at ``index``), filled by ``arrays['impute']`` and standardised by
    ``arrays['mean'/'scale']`` when the request carries them. ``len``, ``shape`` and ``rows[idx]`` (a slice or
    integer indices into the selected rows) are all a learner needs; each access computes only its rows."""

    def __init__(self, X: np.ndarray, arrays: Mapping[str, np.ndarray], columns: Sequence[MissingColumn] = (),
                 index: np.ndarray | None = None) -> None:
        self.X = X
        self.index = index
        width = X.shape[1]
        self.mean = np.asarray(arrays["mean"], dtype=np.float64) if "mean" in arrays else None
        self.scale = np.asarray(arrays["scale"], dtype=np.float64) if "scale" in arrays else None
        self.fill = (check_fill_values(arrays["impute"], width) if "impute" in arrays
                     else np.full(width, np.nan))
        self.native = frozenset(c.index for c in columns if c.policy == "native")
        self._handles: dict[int, tuple[Engine, Any]] = {}
        self._check(columns)

    def handle(self, engine: Engine) -> Any:
        """``engine.put(self)`` once per engine: a cluster engine keeps one copy of the rows for every pass of a
        run (the scaler check, each evaluation) instead of one per request."""
        hit = self._handles.get(id(engine))
        if hit is not None and hit[0] is engine:
            return hit[1]
        handle = engine.put(self)
        if handle is not self:  # the local engine: nothing to keep
            self._handles[id(engine)] = (engine, handle)
        return handle

    def __getstate__(self) -> dict[str, Any]:
        """What an engine ships to its workers: the rows and the request's values, never the engine handles."""
        return {**self.__dict__, "_handles": {}}

    def __len__(self) -> int:
        return int(self.X.shape[0] if self.index is None else self.index.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), int(self.X.shape[1]))

    def __getitem__(self, idx: Any) -> np.ndarray:
        rows = self.X[idx] if self.index is None else self.X[self.index[idx]]
        return self._transform(np.asarray(rows, dtype=np.float64))

    def _filled(self, x: np.ndarray) -> np.ndarray:
        """``fill_missing``'s arithmetic on some rows: a NaN cell takes its column's value where one is given."""
        holes = np.isnan(x)
        if not holes.any():
            return x
        fill = holes & ~np.isnan(self.fill)[None, :]
        return np.where(fill, self.fill[None, :], x) if fill.any() else x

    def _transform(self, x: np.ndarray) -> np.ndarray:
        x = self._filled(x)
        if self.mean is None or self.scale is None:
            return x
        with np.errstate(over="ignore"):  # a tiny finite scale may still overflow a value: the DP paths zero it
            return (x - self.mean) / self.scale

    def _check(self, columns: Sequence[MissingColumn]) -> None:
        """A NaN left after filling in a column that is not ``native`` is refused with the column's name, before
        any row is used (what `fill_missing` did on the whole matrix), one block at a time."""
        engine = current_engine()
        left = engine.map_blocks(_unfilled_block, self.handle(engine), row_blocks(len(self)))
        if not left:
            return
        bad = [j for j in np.flatnonzero(reduce_in_order(left)) if int(j) not in self.native]
        if bad:
            names = [c.name for c in columns if c.index in bad] or [f"column {j}" for j in bad]
            raise ValueError(f"missing values in {names} and no imputation value for them in the request")


def _unfilled_block(rows: ScaledRows, start: int, stop: int) -> np.ndarray:
    """Per column, how many cells of this block stay NaN after filling."""
    raw = rows.X[start:stop] if rows.index is None else rows.X[rows.index[start:stop]]
    return np.isnan(rows._filled(np.asarray(raw, dtype=np.float64))).sum(axis=0)


def _moments_block(rows: ScaledRows, start: int, stop: int, clip_bounds: Any) -> tuple[float, np.ndarray, np.ndarray]:
    x = rows[start:stop]
    if clip_bounds is not None:
        return clipped_moments(x, clip_bounds)
    return float(len(x)), x.sum(axis=0), np.einsum("ij,ij->j", x, x)


def block_moments(rows: ScaledRows, clip_bounds: Any = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Count, Σx and Σx² of the rows (with ``clip_bounds``: of the clipped, centred z, as `clipped_moments`),
    summed block by block in a fixed order."""
    engine = current_engine()
    parts = engine.map_blocks(_moments_block, rows.handle(engine), row_blocks(len(rows)), clip_bounds)
    if not parts:
        width = rows.shape[1]
        return 0.0, np.zeros(width), np.zeros(width)
    return (float(reduce_in_order([p[0] for p in parts])), reduce_in_order([p[1] for p in parts]),
            reduce_in_order([p[2] for p in parts]))


def _scores_block(rows: ScaledRows, start: int, stop: int, model: Any, params: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_proba(params, rows[start:stop]), dtype=np.float64)


def block_scores(rows: ScaledRows, model: Any, params: np.ndarray) -> np.ndarray:
    """The model's probability for every row, one block at a time (the scores vector is the only full array)."""
    engine = current_engine()
    parts = engine.map_blocks(_scores_block, rows.handle(engine), row_blocks(len(rows)), model, params)
    return np.concatenate(parts) if parts else np.zeros(0)
