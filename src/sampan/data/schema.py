"""THE table schema: which columns a party's table has (id, optional label, typed features).

One class for every place a table is declared: a run's `[schema]`, a party.toml's `[data.<name>.schema]`,
a vertical party's own columns (`TableSchema.for_party`) and synthesis (public `bounds` on numeric
columns). It is declared up front, never inferred, so every party encodes the same columns in the same
order and a mismatch is caught at load time inside the party, not in round 7. Categories and bounds are
public domain knowledge: reading them off the records would leak.

Missing values (`sampan.data.missing`): a column may declare its ``missing`` markers (strings such as "?",
"NA", ""; NaN is always missing in a numeric column) and an ``impute`` policy; the table may declare defaults
for both. A table default fills in every column that does not set its own (a category column takes
``category`` for any default other than ``error``), so each `ColumnSpec` of a validated schema is complete.
Both are public: they fix the encoded width (``indicator`` adds ``<name>_missing``, ``category`` adds
``<name>=(missing)``) before any record is read.

Both models are pydantic (frozen, unknown keys refused), and also accept the positional form of the
earlier dataclasses: ``ColumnSpec("sector", "category", ("a", "b"))``, ``TableSchema("id", "y", (...))``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["ColumnKind", "ColumnSpec", "ImputePolicy", "INDICATOR_SUFFIX", "MISSING_CATEGORY", "TableSchema"]

ColumnKind = Literal["float", "int", "bool", "category"]
# error: refuse missing cells (the default); median/mean: federated statistic (vertical: the party's own);
# indicator: the mean plus a 0/1 `<name>_missing` column; native: NaN stays (trees only);
# category: missing is its own category (category columns)
ImputePolicy = Literal["error", "median", "mean", "indicator", "native", "category"]
INDICATOR_SUFFIX = "_missing"
MISSING_CATEGORY = "(missing)"
_NUMERIC_POLICIES = ("error", "median", "mean", "indicator", "native")


class ColumnSpec(BaseModel):
    """One declared feature column; `categories` fix the one-hot order across parties."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    kind: ColumnKind = "float"
    categories: tuple[str, ...] | None = Field(None, description="category columns: the public categories, in order")
    bounds: tuple[float, float] | None = Field(
        None, description="float/int columns: public [low, high] range (synthesis and clipping; never read off data)")
    missing: tuple[str, ...] | None = Field(
        None, description='cell texts that mean "missing", e.g. ["?", "NA", ""] (NaN always does in a numeric column)')
    impute: ImputePolicy | None = Field(
        None, description="what to do with missing cells: error (default), median, mean, indicator, native, category")

    def __init__(self, name: Any = None, kind: Any = None, categories: Any = None, /, **data: Any) -> None:
        for key, value in (("name", name), ("kind", kind), ("categories", categories)):
            if value is not None:
                if key in data:
                    raise TypeError(f"ColumnSpec got {key!r} both by position and by keyword")
                data[key] = value
        super().__init__(**data)

    @field_validator("missing", mode="before")
    @classmethod
    def _one_marker(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else cls._as_text(value)

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
            if not (math.isfinite(hi - lo) and lo < (lo + hi) / 2 < hi):  # reviews R13-LOAD-2, R13-IMP-2
                raise ValueError(f"{where}: bounds {[lo, hi]} must have a finite width with a midpoint strictly "
                                 "between them (the clipping range of the mean, the bins of the median)")
        if self.impute is not None:
            allowed = ("error", "category", "indicator") if self.kind == "category" else _NUMERIC_POLICIES
            if self.impute not in allowed:
                raise ValueError(f"{where}: impute = {self.impute!r} does not apply to a {self.kind} column "
                                 f"(use one of {', '.join(allowed)})")
        return self

    @property
    def policy(self) -> str:
        """The effective missing-value policy (`indicator` on a category column means `category`)."""
        if self.kind == "category" and self.impute == "indicator":
            return "category"
        return self.impute or "error"

    @property
    def width(self) -> int:
        """Number of model columns this feature becomes (one per category for one-hot; +1 for a missing
        indicator or a missing category)."""
        extra = 1 if self.policy in ("indicator", "category") else 0
        return (len(self.categories) if self.categories is not None else 1) + extra

    def encoded_names(self) -> list[str]:
        """Model column names, e.g. ``sector=retail`` for each category, ``income_missing`` for an indicator."""
        if self.categories is None:
            return [self.name] + ([self.name + INDICATOR_SUFFIX] if self.policy == "indicator" else [])
        names = [f"{self.name}={c}" for c in self.categories]
        return names + ([f"{self.name}={MISSING_CATEGORY}"] if self.policy == "category" else [])


class TableSchema(BaseModel):
    """Which columns a table must have: an id, an optional label (0/1) and the declared features.

    In TOML a feature is a table ``{name, kind, categories, bounds}`` or just its name (a float column).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, description="the record id column (PSI key in vertical runs; never a feature)")
    label: str | None = Field(None, description="the 0/1 label column; absent at vertical partners")
    features: tuple[ColumnSpec, ...] = ()
    missing: tuple[str, ...] | None = Field(None, description="default missing markers of every feature column")
    impute: ImputePolicy | None = Field(None, description="default missing-value policy of every feature column")

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

    @field_validator("missing", mode="before")
    @classmethod
    def _markers(cls, value: Any) -> Any:
        return ColumnSpec._one_marker(value)

    @model_validator(mode="after")
    def _defaults(self) -> TableSchema:
        """Table defaults fill in every column that sets none (public: they fix the encoded width)."""
        if self.missing is None and self.impute in (None, "error"):
            return self
        if self.impute == "category":
            raise ValueError("schema.impute = 'category' is a category column's policy; set it on those columns")
        filled = []
        for spec in self.features:
            update: dict[str, Any] = {}
            if spec.missing is None and self.missing is not None:
                update["missing"] = self.missing
            if spec.impute is None and self.impute not in (None, "error"):
                update["impute"] = "category" if spec.kind == "category" else self.impute
            filled.append(spec.model_copy(update=update) if update else spec)
        object.__setattr__(self, "features", tuple(filled))
        return self

    @model_validator(mode="after")
    def _distinct(self) -> TableSchema:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feature columns declared twice: {dupes}")
        if self.id in names:
            raise ValueError(f"id column '{self.id}' must not also be a feature")
        encoded = self.feature_names()
        clashes = sorted({n for n in encoded if encoded.count(n) > 1})
        if clashes:
            raise ValueError(f"model columns named twice: {clashes} (a missing indicator '<name>_missing' clashes "
                             "with a declared feature: rename one)")
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
