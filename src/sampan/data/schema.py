"""THE table schema: which columns a party's table has (id, optional label, typed features).

One class for every place a table is declared: a run's `[schema]`, a party.toml's `[data.<name>.schema]`,
a vertical party's own columns (`TableSchema.for_party`) and synthesis (public `bounds` on numeric
columns). It is declared up front, never inferred, so every party encodes the same columns in the same
order and a mismatch is caught at load time inside the party, not in round 7. Categories and bounds are
public domain knowledge: reading them off the records would leak.

Both models are pydantic (frozen, unknown keys refused), and also accept the positional form of the
earlier dataclasses: ``ColumnSpec("sector", "category", ("a", "b"))``, ``TableSchema("id", "y", (...))``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["ColumnKind", "ColumnSpec", "TableSchema"]

ColumnKind = Literal["float", "int", "bool", "category"]


class ColumnSpec(BaseModel):
    """One declared feature column; `categories` fix the one-hot order across parties."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    kind: ColumnKind = "float"
    categories: tuple[str, ...] | None = Field(None, description="category columns: the public categories, in order")
    bounds: tuple[float, float] | None = Field(
        None, description="float/int columns: public [low, high] range (synthesis and clipping; never read off data)")

    def __init__(self, name: Any = None, kind: Any = None, categories: Any = None, /, **data: Any) -> None:
        for key, value in (("name", name), ("kind", kind), ("categories", categories)):
            if value is not None:
                if key in data:
                    raise TypeError(f"ColumnSpec got {key!r} both by position and by keyword")
                data[key] = value
        super().__init__(**data)

    @field_validator("categories", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return tuple(str(c) for c in value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        where = f"column '{self.name}'"
        if self.kind == "category":
            if not self.categories:
                raise ValueError(f"{where}: a category column needs its categories declared")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError(f"{where}: categories must be unique, got {list(self.categories)}")
        elif self.categories is not None:
            raise ValueError(f"{where}: only a category column takes categories")
        if self.bounds is not None:
            lo, hi = self.bounds
            if self.kind not in ("float", "int"):
                raise ValueError(f"{where}: bounds are for float and int columns only")
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"{where}: bounds must be finite with low < high, got {[lo, hi]}")
        return self

    @property
    def width(self) -> int:
        """Number of model columns this feature becomes (one per category for one-hot)."""
        return len(self.categories) if self.categories is not None else 1

    def encoded_names(self) -> list[str]:
        """Model column names, e.g. ``sector=retail`` for each category."""
        if self.categories is None:
            return [self.name]
        return [f"{self.name}={c}" for c in self.categories]


class TableSchema(BaseModel):
    """Which columns a table must have: an id, an optional label (0/1) and the declared features.

    In TOML a feature is a table ``{name, kind, categories, bounds}`` or just its name (a float column).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, description="the record id column (PSI key in vertical runs; never a feature)")
    label: str | None = Field(None, description="the 0/1 label column; absent at vertical partners")
    features: tuple[ColumnSpec, ...] = ()

    def __init__(self, id: Any = None, label: Any = None, features: Any = None, /, **data: Any) -> None:
        # the earlier dataclass spelled the first two `id_column` and `label_column`
        if "id_column" in data:
            data["id"] = data.pop("id_column")
        if "label_column" in data:
            data["label"] = data.pop("label_column")
        for key, value in (("id", id), ("label", label), ("features", features)):
            if value is not None:
                if key in data:
                    raise TypeError(f"TableSchema got {key!r} both by position and by keyword")
                data[key] = value
        super().__init__(**data)

    @field_validator("features", mode="before")
    @classmethod
    def _plain_names(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return tuple({"name": v} if isinstance(v, str) else v for v in value)
        return value

    @model_validator(mode="after")
    def _distinct(self) -> TableSchema:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feature columns declared twice: {dupes}")
        if self.id in names:
            raise ValueError(f"id column '{self.id}' must not also be a feature")
        if self.label is not None:
            if self.label == self.id:
                raise ValueError("the label column and the id column must differ")
            if self.label in names:
                raise ValueError(f"label column '{self.label}' must not also be a feature")
        return self

    # --- the earlier dataclass's names (kept: many callers) ---------------------------------------------
    @property
    def id_column(self) -> str:
        return self.id

    @property
    def label_column(self) -> str | None:
        return self.label

    # --- views ---------------------------------------------------------------------------------------------
    def columns(self) -> list[str]:
        """Every column the table must contain, in declared order: id, label (if any), features."""
        cols = [self.id]
        if self.label is not None:
            cols.append(self.label)
        cols.extend(f.name for f in self.features)
        return cols

    def feature_names(self) -> list[str]:
        """Names of the model columns after one-hot encoding, e.g. ``sector=retail``."""
        return [name for spec in self.features for name in spec.encoded_names()]

    @property
    def width(self) -> int:
        """Model columns after one-hot encoding (no intercept)."""
        return sum(f.width for f in self.features)

    def feature(self, name: str) -> ColumnSpec:
        for spec in self.features:
            if spec.name == name:
                return spec
        raise KeyError(f"no feature column '{name}' in the schema (features: {[f.name for f in self.features]})")

    def for_party(self, features: Iterable[str], *, with_label: bool) -> TableSchema:
        """A vertical party's own schema: the shared id, the features it holds (declared here), and the
        label only at the label holder. Unknown names raise KeyError naming them."""
        wanted = list(features)
        unknown = [n for n in wanted if n not in {f.name for f in self.features}]
        if unknown:
            raise KeyError(f"features {unknown} are not declared in [schema] "
                           f"(declared: {[f.name for f in self.features]})")
        return TableSchema(id=self.id, label=self.label if with_label else None,
                           features=tuple(self.feature(n) for n in wanted))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (as written in TOML), e.g. for the run store or a party's job description."""
        return self.model_dump(mode="json", exclude_none=True)
