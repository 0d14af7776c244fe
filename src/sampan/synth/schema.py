"""The synthesiser's view of a table: which columns, of which kind, over which *public* domain.

What a user declares is the one table schema, `sampan.data.schema.TableSchema` (a run's [schema], with
public `bounds` on float/int features); `SynthSchema.from_table` derives this view from it (float/int ->
numeric, bool/category/label -> categorical). `SynthSchema` stays as the synthesiser's *domain*: it can
also come from a DP release (``domain_source = "dp"``), which a declared schema never does.

DP protects records, not the domain: category lists and numeric bounds must be known without looking
at the data (documentation, regulation, a data dictionary), or they leak. A schema is therefore
declared (TOML/JSON), or released under DP by `sampan.synth.domain` (``domain_source = "dp"``); it is
never read off the records. ``"inferred"`` marks models written by older versions, which did read
it off the records; the fitter refuses such a schema.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sampan.data.schema import TableSchema
from sampan.errors import ConfigError

__all__ = ["SchemaError", "SynthColumn", "SynthSchema", "load_schema"]

ColumnKind = Literal["categorical", "numeric"]
DomainSource = Literal["declared", "dp", "inferred"]
_COLUMN_KEYS = {"name", "kind", "categories", "bounds", "integer"}
_SCHEMA_KEYS = {"columns", "label", "positive", "domain_source"}


class SchemaError(ConfigError):
    """A schema that cannot be used; the message names the file (if any), column and field."""


@dataclass(frozen=True)
class SynthColumn:
    """One column: categorical over declared categories, or numeric within public bounds."""

    name: str
    kind: ColumnKind
    categories: tuple[str, ...] | None = None
    bounds: tuple[float, float] | None = None
    integer: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SchemaError(f"column name must be a non-empty string, got {self.name!r}")
        where = f"column '{self.name}'"
        if self.kind == "categorical":
            if not self.categories:
                raise SchemaError(f"{where}: a categorical column needs its categories declared")
            cats = tuple(str(c) for c in self.categories)
            if len(set(cats)) != len(cats):
                raise SchemaError(f"{where}: categories must be unique, got {list(cats)}")
            object.__setattr__(self, "categories", cats)
            if self.bounds is not None or self.integer:
                raise SchemaError(f"{where}: 'bounds'/'integer' are for numeric columns only")
        elif self.kind == "numeric":
            if self.categories is not None:
                raise SchemaError(f"{where}: only a categorical column takes 'categories'")
            if self.bounds is None or len(self.bounds) != 2:
                raise SchemaError(f"{where}: a numeric column needs public 'bounds' = [low, high]")
            lo, hi = (float(b) for b in self.bounds)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise SchemaError(f"{where}: 'bounds' must be finite with low < high, got {list(self.bounds)}")
            if self.integer:
                lo, hi = float(math.ceil(lo)), float(math.floor(hi))
                if lo >= hi:
                    raise SchemaError(f"{where}: integer bounds must contain at least two integers")
            object.__setattr__(self, "bounds", (lo, hi))
            object.__setattr__(self, "integer", bool(self.integer))
        else:
            raise SchemaError(f"{where}: 'kind' must be 'categorical' or 'numeric', got {self.kind!r}")

    @property
    def size(self) -> int:
        """Number of categories (categorical columns only)."""
        assert self.categories is not None
        return len(self.categories)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "categorical":
            out["categories"] = list(self.categories or ())
        else:
            out["bounds"] = list(self.bounds or ())
            out["integer"] = self.integer
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "") -> SynthColumn:
        prefix = f"{where}: " if where else ""
        if not isinstance(data, Mapping):
            raise SchemaError(f"{prefix}each column must be a table/object, got {data!r}")
        unknown = set(data) - _COLUMN_KEYS
        name = data.get("name", "?")
        if unknown:
            raise SchemaError(f"{prefix}column '{name}': unknown field(s) {sorted(unknown)}")
        if "name" not in data or "kind" not in data:
            raise SchemaError(f"{prefix}column '{name}': needs 'name' and 'kind'")
        categories, bounds, integer = data.get("categories"), data.get("bounds"), data.get("integer", False)
        if categories is not None and not isinstance(categories, (list, tuple)):
            raise SchemaError(f"{prefix}column '{name}': 'categories' must be a list, got {categories!r}")
        if bounds is not None and (not isinstance(bounds, (list, tuple)) or len(bounds) != 2):
            raise SchemaError(f"{prefix}column '{name}': 'bounds' must be a list [low, high], got {bounds!r}")
        if not isinstance(integer, bool):
            raise SchemaError(f"{prefix}column '{name}': 'integer' must be true or false, got {integer!r}")
        try:
            return cls(
                name=str(data["name"]),
                kind=data["kind"],
                categories=None if categories is None else tuple(str(c) for c in categories),
                bounds=None if bounds is None else (float(bounds[0]), float(bounds[1])),
                integer=integer,
            )
        except SchemaError as exc:
            raise SchemaError(f"{prefix}{exc}") from None
        except (TypeError, ValueError, IndexError) as exc:
            raise SchemaError(f"{prefix}column '{name}': {exc}") from None


@dataclass(frozen=True)
class SynthSchema:
    """Columns in order, the label (a categorical column, optional) and where the domain came from."""

    columns: tuple[SynthColumn, ...]
    label: str | None = None
    positive: str | None = None
    domain_source: DomainSource = "declared"
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cols = tuple(self.columns)
        object.__setattr__(self, "columns", cols)
        if not cols:
            raise SchemaError("a schema needs at least one column")
        names = [c.name for c in cols]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"column(s) declared twice: {dupes}")
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})
        if self.domain_source not in ("declared", "dp", "inferred"):
            raise SchemaError(f"domain_source must be 'declared' or 'dp', got {self.domain_source!r}")
        if self.label is not None:
            if self.label not in self._index:
                raise SchemaError(f"label '{self.label}' is not a declared column (columns: {names})")
            spec = cols[self._index[self.label]]
            if spec.kind != "categorical":
                raise SchemaError(f"label '{self.label}' must be categorical (declare its classes as categories)")
            if self.positive is None:
                cats = spec.categories or ()
                object.__setattr__(self, "positive", "1" if "1" in cats else cats[-1])
            elif self.positive not in (spec.categories or ()):
                raise SchemaError(f"positive class {self.positive!r} is not a category of label '{self.label}'")
        elif self.positive is not None:
            raise SchemaError("'positive' needs a 'label'")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def features(self) -> list[SynthColumn]:
        """Every column except the label."""
        return [c for c in self.columns if c.name != self.label]

    def column(self, name: str) -> SynthColumn:
        try:
            return self.columns[self._index[name]]
        except KeyError:
            raise SchemaError(f"no column '{name}' in the schema (columns: {self.names})") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "positive": self.positive,
            "domain_source": self.domain_source,
            "columns": [c.to_dict() for c in self.columns],
        }

    @classmethod
    def from_table(cls, schema: TableSchema, where: str = "") -> SynthSchema:
        """The synthesiser's domain of a declared table schema (the id column is never synthesised).

        float/int features need public `bounds`; bool becomes categorical false/true; the label, 0/1."""
        prefix = f"{where}: " if where else ""
        columns: list[SynthColumn] = []
        if schema.label is not None:
            columns.append(SynthColumn(schema.label, "categorical", ("0", "1")))
        for spec in schema.features:
            try:
                if spec.kind == "category":
                    columns.append(SynthColumn(spec.name, "categorical", spec.categories))
                elif spec.kind == "bool":
                    columns.append(SynthColumn(spec.name, "categorical", ("false", "true")))
                else:
                    if spec.bounds is None:
                        raise SchemaError(f"column '{spec.name}': a {spec.kind} feature needs public 'bounds' = "
                                          "[low, high] for synthesis (never read off the data)")
                    columns.append(SynthColumn(spec.name, "numeric", bounds=spec.bounds, integer=spec.kind == "int"))
            except SchemaError as exc:
                raise SchemaError(f"{prefix}schema.features: {exc}") from None
        return cls(tuple(columns), label=schema.label, positive="1" if schema.label is not None else None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "") -> SynthSchema:
        prefix = f"{where}: " if where else ""
        if not isinstance(data, Mapping):
            raise SchemaError(f"{prefix}a schema must be a table/object")
        if "features" in data and "columns" not in data:  # the one table-schema dialect (id, label, features)
            from pydantic import ValidationError

            try:
                return cls.from_table(TableSchema.model_validate(dict(data)), where)
            except ValidationError as exc:
                raise SchemaError(prefix + "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'schema'}: "
                                                     f"{str(e['msg']).removeprefix('Value error, ')}"
                                                     for e in exc.errors())) from None
        unknown = set(data) - _SCHEMA_KEYS
        if unknown:
            raise SchemaError(f"{prefix}unknown schema field(s) {sorted(unknown)} (known: {sorted(_SCHEMA_KEYS)})")
        raw = data.get("columns")
        if not isinstance(raw, list):
            raise SchemaError(f"{prefix}'columns' must be a list of column tables ([[columns]] in TOML)")
        columns = tuple(SynthColumn.from_dict(c, where) for c in raw)
        try:
            return cls(columns, label=data.get("label"), positive=data.get("positive"),
                       domain_source=data.get("domain_source", "declared"))
        except SchemaError as exc:
            raise SchemaError(f"{prefix}{exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def load_schema(path: str | Path) -> SynthSchema:
    """Read a schema from TOML (``[[columns]]`` tables) or JSON; errors name the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SchemaError(f"schema file '{p}' does not exist") from None
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SchemaError(f"{p}: cannot parse: {exc}") from None
    if isinstance(data, dict) and "schema" in data and "columns" not in data:
        data = data["schema"]
    return SynthSchema.from_dict(data, str(p))


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _as_text(values: np.ndarray) -> np.ndarray:
    """Category values as strings; integral floats print without '.0' so 1.0 and '1' agree."""
    if values.dtype.kind == "f":
        return np.array([_fmt(v) for v in values], dtype=object)
    if values.dtype.kind == "b":
        return np.array(["true" if v else "false" for v in values], dtype=object)
    return np.array([str(v) for v in values], dtype=object)
