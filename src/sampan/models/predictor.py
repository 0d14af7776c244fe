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

__all__ = ["Predictor"]

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


def _numbers(name: str, values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "biuf":
        out = values.astype(np.float64)
    else:
        text = np.array([str(v).strip().lower() for v in values], dtype=object)
        if text.size and all(t in _TRUE | _FALSE for t in text):
            out = np.array([1.0 if t in _TRUE else 0.0 for t in text])
        else:
            try:
                out = np.array([float(v) if v is not None else np.nan for v in values], dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise DataError(f"column {name!r}: values must be numbers ({exc})") from None
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        raise DataError(f"column {name!r}: {bad.size} missing or non-finite value(s) (first at row {int(bad[0])})")
    return out


def _one_hot(name: str, values: np.ndarray, categories: tuple[str, ...]) -> np.ndarray:
    index = {c: i for i, c in enumerate(categories)}
    codes = np.array([index.get(str(v), -1) if v is not None else -1 for v in values], dtype=np.int64)
    bad = np.flatnonzero(codes < 0)
    if bad.size:
        unknown = sorted({str(values[i]) for i in bad[:50]})[:3]
        raise DataError(f"column {name!r}: {bad.size} row(s) with a category the model does not know "
                        f"(e.g. {', '.join(repr(u) for u in unknown)}; known: {', '.join(categories)})")
    block = np.zeros((values.shape[0], len(categories)))
    block[np.arange(values.shape[0]), codes] = 1.0
    return block


@dataclass
class Predictor:
    """A model from the registry, ready to score rows: ``predict_proba(frame)`` -> (n, 2) like scikit-learn.

    ``scorer`` maps the encoded, standardised matrix to P(default); `from_registered` builds it for the
    parametric models (`model_from_config`: logistic, MLP) or takes one (e.g. a tree model's)."""

    scorer: Callable[[np.ndarray], np.ndarray]
    feature_names: list[str]
    scaler: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = ""
    version: int | None = None
    run_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    classes_: np.ndarray = field(default_factory=lambda: np.array([0, 1]))

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
        return cls(scorer, [str(n) for n in meta["feature_names"]], scaler, name, version, run_id, dict(meta))

    @property
    def columns(self) -> list[str]:
        """The input columns a frame must have (any others are ignored)."""
        return [i.name for i in _inputs(self.feature_names)]

    def encode(self, frame: Any) -> np.ndarray:
        """The model matrix for ``frame``: columns picked by name, categories one-hot, then standardised."""
        names, get = _column_source(frame)
        present = set(names)
        inputs = []
        for item in _inputs(self.feature_names):  # a numeric column named "a=b" is read whole when present
            whole = f"{item.name}={item.categories[0]}" if item.categories and len(item.categories) == 1 else None
            inputs.append(_Input(whole) if whole in present else item)
        missing = [i.name for i in inputs if i.name not in present]
        if missing:
            raise DataError(f"model {self.name!r}: missing column(s) {', '.join(repr(m) for m in missing)} "
                            f"(it needs {', '.join(self.columns)})")
        blocks, rows = [], None
        for item in inputs:
            values = get(item.name)
            if values.ndim != 1:
                raise DataError(f"column {item.name!r} must be 1-D, got shape {values.shape}")
            if rows is not None and values.shape[0] != rows:
                raise DataError(f"column {item.name!r} has {values.shape[0]} rows, the others {rows}")
            rows = values.shape[0]
            blocks.append(_numbers(item.name, values)[:, None] if item.categories is None
                          else _one_hot(item.name, values, item.categories))
        X = np.hstack(blocks) if blocks else np.empty((0, 0))
        if "mean" in self.scaler:
            X = (X - self.scaler["mean"]) / self.scaler["scale"]
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
