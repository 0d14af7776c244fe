"""A registered model as a scorer of new rows: named columns in, P(default) out.

Why: a trained model is stored as arrays + JSON (params, the federation's scaler, the encoded feature
names); scoring a new applicant needs the same encoding (one-hot categories, same column order) and
the same standardisation the parties applied. `Predictor` redoes both from the registry entry alone,
validating columns by name at the boundary (scikit-learn style) with errors that name the column.

Encoded feature names are the training encoding: ``col`` for a numeric/bool column and ``col=value``
for each category of a category column (`sampan.data.schema.ColumnSpec.encoded_names`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.errors import ConfigError, DataError
from sampan.models.base import Model
from sampan.models.registry import model_from_config

__all__ = ["Predictor", "input_blocks", "MISSING_MARKERS"]

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


@dataclass(frozen=True)
class _Input:
    """One input column and the model columns it fills: a number, or one-hot ``categories``."""

    name: str
    categories: tuple[str, ...] | None = None


def _inputs(feature_names: Sequence[str]) -> list[_Input]:
    """Group ``col=value`` names (consecutive, same ``col``) into category inputs; the rest are numeric."""
    inputs: list[_Input] = []
    for name in feature_names:
        column, sep, value = name.partition("=")
        if sep and inputs and inputs[-1].categories is not None and inputs[-1].name == column:
            inputs[-1] = _Input(column, (*inputs[-1].categories, value))
        elif sep:
            inputs.append(_Input(column, (value,)))
        else:
            inputs.append(_Input(name))
    return inputs


def _column_source(frame: Any) -> tuple[list[str], Callable[[str], np.ndarray]]:
    """Column names and a getter for a pandas DataFrame, a pyarrow Table or a mapping of columns."""
    if isinstance(frame, Mapping):
        return [str(k) for k in frame], lambda name: np.asarray(frame[name])
    if hasattr(frame, "column_names") and hasattr(frame, "column"):  # pyarrow.Table
        return list(frame.column_names), lambda name: frame.column(name).to_numpy(zero_copy_only=False)
    if hasattr(frame, "columns") and hasattr(frame, "__getitem__"):  # pandas.DataFrame
        names = [str(c) for c in frame.columns]
        return names, lambda name: np.asarray(frame[name].to_numpy())
    raise DataError(f"predict_proba takes a pandas DataFrame, a pyarrow Table or a mapping of column name -> "
                    f"values, got {type(frame).__name__}")


MISSING_CATEGORY = "(missing)"  # = sampan.data.schema.MISSING_CATEGORY (the loader's missing category)
MISSING_MARKERS = frozenset({"", "?", "na", "n/a", "nan", "null", "none"})  # case-insensitive, trimmed


def _row_list(rows: np.ndarray, first_row: int) -> str:
    """``row 4`` / ``rows 4, 9, 17 (+2 more)``; positions counted from ``first_row``."""
    shown = ", ".join(str(int(r) + first_row) for r in rows[:5])
    more = f" (+{rows.size - 5} more)" if rows.size > 5 else ""
    return f"{'row' if rows.size == 1 else 'rows'} {shown}{more}"


def _numbers(name: str, values: np.ndarray, first_row: int = 0, markers: frozenset[str] = MISSING_MARKERS
             ) -> np.ndarray:
    """Floats with NaN where the value is missing (None, NaN or a marker such as '', '?', 'NA')."""
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    text = np.char.lower(np.char.strip(values.astype(str)))  # None -> "none", NaN -> "nan": both markers
    missing = np.isin(text, list(markers))
    out = np.full(len(text), np.nan)
    if (~missing).any() and all(t in _TRUE | _FALSE for t in text[~missing]):
        out[~missing] = [1.0 if t in _TRUE else 0.0 for t in text[~missing]]
        return out
    try:
        out[~missing] = np.asarray(text[~missing].astype(str), dtype=np.float64)
    except ValueError:
        bad = []
        for k in np.flatnonzero(~missing):
            try:
                out[k] = float(text[k])
            except ValueError:
                bad.append(k)
        rows = np.asarray(bad)
        raise DataError(f"column {name!r}: {rows.size} value(s) are not numbers ({_row_list(rows, first_row)}; "
                        f"e.g. {values[rows[0]]!r})") from None
    return out


def _one_hot(name: str, values: np.ndarray, categories: tuple[str, ...], first_row: int = 0,
             markers: frozenset[str] = MISSING_MARKERS) -> np.ndarray:
    """One-hot block; a missing cell is the model's ``(missing)`` category when training had one."""
    index = {c: i for i, c in enumerate(categories)}
    text = ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]
    if MISSING_CATEGORY in index:
        text = [MISSING_CATEGORY if t.strip().lower() in markers else t for t in text]
    codes = np.array([index.get(t, -1) for t in text], dtype=np.int64)
    bad = np.flatnonzero(codes < 0)
    if bad.size:
        unknown = sorted({text[i] for i in bad[:50]})[:3]
        raise DataError(f"column {name!r}: {bad.size} row(s) with a category the model does not know "
                        f"({_row_list(bad, first_row)}; e.g. {', '.join(repr(u) for u in unknown)}; "
                        f"known: {', '.join(categories)})")
    block = np.zeros((values.shape[0], len(categories)))
    block[np.arange(values.shape[0]), codes] = 1.0
    return block


def input_blocks(feature_names: Sequence[str]) -> list[tuple[str, list[int]]]:
    """Each input column and the positions of the encoded model columns it fills."""
    blocks, start = [], 0
    for item in _inputs(feature_names):
        width = len(item.categories) if item.categories is not None else 1
        blocks.append((item.name, list(range(start, start + width))))
        start += width
    return blocks


@dataclass
class Predictor:
    """A model from the registry, ready to score rows: ``predict_proba(frame)`` -> (n, 2) like scikit-learn.

    ``scorer`` maps the encoded, standardised matrix to P(default); `from_registered` builds it for the
    parametric models (`model_from_config`: logistic, MLP) or takes one (e.g. a tree model's). Missing
    values are filled with the training's values (the ``impute`` array, one per model column, NaN: none;
    `sampan.data.missing`), kept as NaN for a model that routes them itself (``native_missing``: GBDT),
    else refused naming the column and rows."""

    scorer: Callable[[np.ndarray], np.ndarray]
    feature_names: list[str]
    scaler: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = ""
    version: int | None = None
    run_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    classes_: np.ndarray = field(default_factory=lambda: np.array([0, 1]))
    native_missing: bool = False
    markers: frozenset[str] = MISSING_MARKERS  # cell texts read as missing (lower case; + the schema's own)
    column_markers: dict[str, frozenset[str]] = field(default_factory=dict)  # a column's own markers (replace them)
    native_columns: frozenset[str] | None = None  # trees: the columns trained with a missing policy (None: all)

    @classmethod
    def from_registered(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], *, name: str = "",
                        version: int | None = None, run_id: str | None = None,
                        scorer: Callable[[np.ndarray], np.ndarray] | None = None) -> Predictor:
        """Build from a registry entry (``params``, ``scaler.*`` arrays; ``model`` and ``feature_names`` meta)."""
        label = f"model {name!r}" + (f" v{version}" if version is not None else "")
        if "model" not in meta or "feature_names" not in meta or (scorer is None and "params" not in arrays):
            raise ConfigError(f"{label} is not a scoring model (it has no model config, params and feature names; "
                              "vertical model parts stay with their parties: use `sampan score`)")
        if scorer is None:
            try:
                model: Model = model_from_config(meta["model"])
                params = model.check_params(arrays["params"])
            except (ValueError, KeyError) as exc:
                raise ConfigError(f"{label}: {exc}") from None
            scorer = lambda X: model.predict_proba(params, X)  # noqa: E731 - bound to this model's params
        scaler = {k.removeprefix("scaler."): np.asarray(v, dtype=np.float64)
                  for k, v in arrays.items() if k.startswith("scaler.")}
        if "impute" in arrays:  # a model without a scaler (trees) carries its fill values on their own
            scaler["impute"] = np.asarray(arrays["impute"], dtype=np.float64)
        native = (meta.get("model") or {}).get("kind") == "gbdt"
        return cls(scorer, [str(n) for n in meta["feature_names"]], scaler, name, version, run_id, dict(meta),
                   native_missing=native)

    @property
    def columns(self) -> list[str]:
        """The input columns a frame must have (any others are ignored)."""
        return [i.name for i in self._inputs(None)]

    def _inputs(self, present: set[str] | None) -> list[_Input]:
        inputs = []
        for item in _inputs(self.feature_names):  # a numeric column named "a=b" is read whole when present
            whole = f"{item.name}={item.categories[0]}" if item.categories and len(item.categories) == 1 else None
            inputs.append(_Input(whole) if present is not None and whole in present else item)
        return inputs

    def input_blocks(self) -> list[tuple[str, list[int]]]:
        """Each input column and the positions of the model columns it fills (reason codes sum over a block)."""
        return input_blocks(self.feature_names)

    def encode(self, frame: Any, *, where: str = "", first_row: int = 0) -> np.ndarray:
        """The model matrix for ``frame``: columns picked by name, missing values imputed, categories one-hot,
        then standardised. ``where`` (e.g. "file 'a.csv': ") and ``first_row`` place errors in the source."""
        try:
            return self._encode(frame, first_row)
        except DataError as exc:
            if not where:
                raise
            raise DataError(f"{where}{exc}") from None

    def _encode(self, frame: Any, first_row: int) -> np.ndarray:
        names, get = _column_source(frame)
        present = set(names)
        inputs = self._inputs(present)
        derived = {i.name for i in inputs if i.name.endswith("_missing") and i.name not in present
                   and i.name.removesuffix("_missing") in present}  # missing-indicator columns, from their column
        missing = [i.name for i in inputs if i.name not in present and i.name not in derived]
        if missing:
            raise DataError(f"model {self.name!r}: missing column(s) {', '.join(repr(m) for m in missing)} "
                            f"(it needs {', '.join(self.columns)})")
        blocks, rows = [], None
        for item in inputs:
            source = item.name.removesuffix("_missing") if item.name in derived else item.name
            values = get(source)
            if values.ndim != 1:
                raise DataError(f"column {source!r} must be 1-D, got shape {values.shape}")
            if rows is not None and values.shape[0] != rows:
                raise DataError(f"column {source!r} has {values.shape[0]} rows, the others {rows}")
            rows = values.shape[0]
            if item.categories is not None:
                blocks.append(_one_hot(item.name, values, item.categories, first_row,
                                       self.column_markers.get(source, self.markers)))
                continue
            x = _numbers(source, values, first_row, self.column_markers.get(source, self.markers))
            blocks.append((np.isnan(x).astype(np.float64) if item.name in derived else x)[:, None])
        X = np.hstack(blocks) if blocks else np.empty((0, 0))
        X = self._fill(X, first_row)
        if "mean" in self.scaler:
            X = (X - self.scaler["mean"]) / self.scaler["scale"]
        return X

    def _fill(self, X: np.ndarray, first_row: int) -> np.ndarray:
        """Missing cells: the training's fill value, NaN for a tree model, else a clear error (column, rows)."""
        holes = ~np.isfinite(X)
        if not holes.any():
            return X
        fill = self.scaler.get("impute")
        if fill is not None and fill.shape == (X.shape[1],):
            X = np.where(np.isnan(X) & np.isfinite(fill)[None, :], fill[None, :], X)
            holes = ~np.isfinite(X)
        if self.native_missing:  # trees route NaN, in the columns trained with a missing policy (R13-SCO-4)
            nan, holes = np.isnan(X), np.isinf(X)
            for name, cols in (input_blocks(self.feature_names) if self.native_columns is not None else []):
                if name not in self.native_columns:  # type: ignore[operator]
                    holes[:, cols] |= nan[:, cols]
        for j in np.flatnonzero(holes.any(axis=0)):
            gaps = np.flatnonzero(holes[:, j])
            raise DataError(f"column {self.feature_names[j]!r}: {gaps.size} missing or non-finite value(s) "
                            f"({_row_list(gaps, first_row)}) and the model has no imputation value for it (train "
                            "with impute = median/mean/indicator for this column, or fill the values)")
        return X

    def default_probability(self, frame: Any) -> np.ndarray:
        """P(default) per row, shape (n,)."""
        return np.asarray(self.scorer(self.encode(frame)), dtype=np.float64)

    def predict_proba(self, frame: Any) -> np.ndarray:
        """[P(no default), P(default)] per row, shape (n, 2) (scikit-learn's convention; classes_ = [0, 1])."""
        p = self.default_probability(frame)
        return np.column_stack([1.0 - p, p])

    def predict(self, frame: Any, threshold: float = 0.5) -> np.ndarray:
        """1 where P(default) >= threshold."""
        return (self.default_probability(frame) >= threshold).astype(np.int8)
