"""Missing values inside a party: which encoded columns are imputed how, and filling them with agreed values.

The policy is declared in the schema (`ColumnSpec.missing` markers, `ColumnSpec.impute`); the loader keeps a
missing cell as NaN in every column whose policy is not ``error`` and fills the indicator / missing-category
columns itself. What fills the NaN is decided elsewhere and applied here:
- horizontal runs: federated statistics (`sampan.horizontal.imputation`), sent back by the coordinator in every
  request as the ``impute`` array (one value per model column, NaN where nothing is filled) and stored with the
  model, so scoring imputes exactly as training did;
- vertical runs: each party's own statistics over its own rows (`impute_locally`): nothing leaves the party;
  under vertical DP (WOE / GBDT histograms) the midpoint of the column's public bounds instead (review R13-VIMP-1).
``native`` columns keep NaN (tree models learn a default direction); linear models and MLPs refuse them.

Nothing here sends anything: these functions run on one party's rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sampan.data.schema import TableSchema

__all__ = ["FILL_POLICIES", "MissingColumn", "check_fill_values", "fill_missing", "impute_locally",
           "local_fill_values", "median_from_histogram", "missing_columns", "public_fill_values", "refuse_native",
           "table_fill_values", "HOW_TO_FIX"]

log = logging.getLogger(__name__)
FILL_POLICIES = ("median", "mean", "indicator")  # policies that need a fill value (indicator fills the mean)
HOW_TO_FIX = ('to accept them, declare in its [schema] feature missing = ["?", ""] and impute = '
              '"median" | "mean" | "indicator" | "native" ("category" for a category column)')


@dataclass(frozen=True)
class MissingColumn:
    """One encoded model column whose missing cells are NaN until filled (public: derived from the schema)."""

    index: int
    name: str
    policy: str
    bounds: tuple[float, float] | None = None

    @property
    def statistic(self) -> str | None:
        """The statistic that fills it: "median", "mean", or None (native: NaN stays)."""
        if self.policy == "median":
            return "median"
        return "mean" if self.policy in ("mean", "indicator") else None


def missing_columns(schema: TableSchema) -> tuple[MissingColumn, ...]:
    """The encoded columns of ``schema`` that may hold NaN after loading (numeric/bool columns whose policy is
    median, mean, indicator or native), in model-column order."""
    out, j = [], 0
    for spec in schema.features:
        if spec.kind != "category" and spec.policy in (*FILL_POLICIES, "native"):
            out.append(MissingColumn(j, spec.name, spec.policy, spec.bounds))
        j += spec.width
    return tuple(out)


def check_fill_values(values: Any, width: int) -> np.ndarray:
    """The ``impute`` array a request carries: one float per model column, finite or NaN (nothing to fill);
    an infinite value or a wrong shape is refused (it would make features infinite)."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (width,):
        raise ValueError(f"the imputation values have shape {v.shape}; the rows have {width} features")
    if np.isinf(v).any():
        raise ValueError("the imputation values must be finite (or NaN: nothing to fill)")
    return v


def fill_missing(X: np.ndarray, values: Any, columns: Sequence[MissingColumn] = ()) -> np.ndarray:
    """``X`` with NaN cells replaced by ``values`` (a copy when anything is filled). A NaN left in a column that is
    not ``native`` means the request carried no value for it: refused with the column's name."""
    v = check_fill_values(values, X.shape[1])
    holes = np.isnan(X)
    if not holes.any():
        return X
    fill = holes & ~np.isnan(v)[None, :]
    out = np.where(fill, v[None, :], X) if fill.any() else X
    native = {c.index for c in columns if c.policy == "native"}
    left = [j for j in np.flatnonzero(np.isnan(out).any(axis=0)) if int(j) not in native]
    if left:
        names = [c.name for c in columns if c.index in left] or [f"column {j}" for j in left]
        raise ValueError(f"missing values in {names} and no imputation value for them in the request")
    return out


def median_from_histogram(counts: np.ndarray, low: float, high: float) -> float:
    """The median of a histogram over equal public bins of [low, high] (negative noised counts count as 0),
    interpolated within its bin; the middle of the range when the histogram is empty."""
    c = np.clip(np.asarray(counts, dtype=np.float64), 0.0, None)
    total = float(c.sum())
    if total <= 0:
        return (low + high) / 2
    cum = np.cumsum(c)
    k = int(np.searchsorted(cum, total / 2))
    before = float(cum[k - 1]) if k else 0.0
    within = (total / 2 - before) / c[k] if c[k] > 0 else 0.5
    width = (high - low) / c.size
    return float(low + width * (k + min(max(within, 0.0), 1.0)))


def local_fill_values(X: np.ndarray, columns: Iterable[MissingColumn]) -> np.ndarray:
    """Fill values from these rows alone (a vertical party's own columns): the exact median or mean of the
    present cells; 0 for a column with no present cell; NaN for columns not filled (native, not listed)."""
    values = np.full(X.shape[1], np.nan)
    for c in columns:
        if c.statistic is None:
            continue
        present = X[:, c.index][~np.isnan(X[:, c.index])]
        if present.size == 0:  # inside the party: its log says so (the fill is a default, not a statistic)
            log.warning("column %r has no present value: its missing cells are filled with 0", c.name)
            values[c.index] = 0.0
        else:
            values[c.index] = float(np.median(present) if c.statistic == "median" else present.mean())
    return values


def public_fill_values(party: str, width: int, columns: Iterable[MissingColumn]) -> np.ndarray:
    """Fill values from public information only: the midpoint of each filled column's declared ``bounds`` (a
    ``native`` column too: its linear view is filled). Under vertical DP (review R13-VIMP-1) a data-dependent
    fill (the median of all rows) would let one added customer move the fill, and with it the binned record of
    every customer with a missing cell: the histogram accounts charge one record. A column without bounds is
    refused, naming it and the fix."""
    values = np.full(width, np.nan)
    unbounded = []
    for c in columns:
        if c.bounds is None:
            unbounded.append(c.name)
        else:
            values[c.index] = (float(c.bounds[0]) + float(c.bounds[1])) / 2
    if unbounded:
        raise ValueError(f"party {party!r}: columns {unbounded} are imputed in a vertical run with DP (WOE or GBDT "
                         "histograms); give each public bounds = [low, high] in its [schema] (the missing cells are "
                         "filled with their midpoint: a fill read off the rows would move other customers' bins)")
    return values


def table_fill_values(data: Any, *, public: bool = False) -> np.ndarray:
    """The values a vertical party's table fills its columns with (a ``native`` column's linear view included):
    its own rows' median / mean, or under DP (``public``) its bounds' midpoint (`public_fill_values`)."""
    linear = [replace(c, policy="median") if c.policy == "native" else c for c in data.missing_columns]
    if public:
        return public_fill_values(data.party, data.X.shape[1], linear)
    return local_fill_values(data.X, linear)


def impute_locally(data: Any, *, public: bool = False, values: np.ndarray | None = None) -> Any:
    """A vertical party's table with its own missing cells filled (`local_fill_values` from its own rows, or
    `public_fill_values` when ``public``: a run with vertical DP); the values are kept on the table
    (``fill_values``) so its model part can record them. A ``native`` column is filled in ``X`` (the secure LR and
    the scorecard cannot use NaN: its median, or its bounds' midpoint when ``public``) and keeps NaN in
    ``trees_X``, the view the vertical GBDT learns its default directions on. ``values``: fill with these (the
    ones a trained model part recorded, or a scoring table's training rows gave) instead. Nothing leaves the
    party."""
    columns = getattr(data, "missing_columns", ())
    # under DP: every filled column needs bounds, whether or not this table has a hole in it (a refusal that
    # depended on the rows would itself tell one customer apart)
    own = table_fill_values(data, public=public) if public or values is None else None
    if not columns or not np.isnan(data.X).any():
        return data
    values = check_fill_values(own if values is None else values, data.X.shape[1])
    X = fill_missing(data.X, values, columns)
    native = [c.index for c in columns if c.policy == "native"]
    trees = None
    if native and np.isnan(data.X[:, native]).any():
        keep = values.copy()
        keep[native] = np.nan
        trees = fill_missing(data.X, keep, columns)
    return replace(data, X=X, fill_values=values, trees_X=trees)


def refuse_native(schemas: Mapping[str, TableSchema] | TableSchema, model: str) -> None:
    """``native`` keeps NaN for tree models; a linear model or an MLP cannot use it: a clear error naming the
    columns and the fix."""
    items = schemas.items() if isinstance(schemas, Mapping) else [("schema", schemas)]
    native = sorted({f.name for _, s in items for f in s.features if f.policy == "native"})
    if native:
        raise ValueError(f"columns {native} declare impute = \"native\" (missing values stay NaN for tree models), "
                         f"but the {model} model cannot use NaN: choose impute = \"median\", \"mean\" or "
                         "\"indicator\" for them, or train a gbdt model")


def check_run_policies(schema: TableSchema | None, *, workflow: str, models: Sequence[str], private: bool) -> None:
    """Config-time checks of the declared policies against the run (ValueError naming the columns and the fix):
    ``native`` in a horizontal run only with a tree model (a vertical party fills a native column with its own
    median for the secure LR and scorecard, `impute_locally`); under horizontal DP every imputed column needs
    public ``bounds`` (the clipping range of the mean, the bins of the median sketch; never read off the data), and
    under vertical DP too (the fill is the bounds' midpoint, `public_fill_values`)."""
    if schema is None:
        return
    linear = [m for m in models if m not in ("gbdt",)]
    if linear and workflow != "vertical":  # a vertical party's LR and scorecard see its own median instead
        refuse_native(schema, "/".join(linear))
    if workflow == "vertical" and private:  # R13-VIMP-1: each party fills from its bounds' midpoint (native too)
        unbounded = [c.name for c in missing_columns(schema) if c.bounds is None]
        if unbounded:
            raise ValueError(f"schema: columns {unbounded} are imputed in a vertical run with DP (WOE counts or GBDT "
                             "histograms); give each public bounds = [low, high] in [schema]: missing cells are filled "
                             "with their midpoint (a fill read off the rows would move other customers' bins)")
    if workflow == "horizontal" and private and "gbdt" not in models:  # trees take missing cells natively
        unbounded = [c.name for c in missing_columns(schema) if c.statistic is not None and c.bounds is None]
        if unbounded:
            raise ValueError(f"schema: columns {unbounded} are imputed (median/mean/indicator) under [privacy]; "
                             "give each public bounds = [low, high] in [schema] (the median's quantile-sketch bins "
                             "and the mean's clipping range: never read off the data)")
