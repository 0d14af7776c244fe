"""Readers for the public credit datasets kept in ``../shared/data`` (never copied into the repo).

Each reader takes a path (the data file, its folder, or the shared data folder itself), checks the file
through the same validation path as any party's table, and returns a `PartyData` whose label 1 always
means *default / bad credit*. Column meanings, licences and verified counts are in each dataset's
``SOURCE.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sampan.data.loaders import from_columns, load_table, read_columns
from sampan.data.table import ColumnSpec, DataValidationError, PartyData, TableSchema

__all__ = [
    "shared_data_dir",
    "load_taiwan_default",
    "load_german_credit",
    "load_south_german_credit",
    "TAIWAN_SCHEMA",
    "GERMAN_SCHEMA",
    "SOUTH_GERMAN_SCHEMA",
]

ENV_VAR = "SAMPAN_SHARED_DATA"


def shared_data_dir() -> Path | None:
    """Where the shared public datasets live, or ``None`` if they are not on this machine.

    ``$SAMPAN_SHARED_DATA`` wins when set (and is then the only place looked at). Otherwise the
    ancestors of the working directory and of this file are searched for ``shared/data``, which finds
    ``/work/shared/data`` beside a checkout at ``/work/main``.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        return p if p.is_dir() else None
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for ancestor in (start, *start.parents):
            for candidate in (ancestor / "shared" / "data", ancestor.parent / "shared" / "data"):
                if candidate.is_dir():
                    return candidate
    return None


def _resolve(path: str | Path, filename: str, folder: str) -> Path:
    """Accept the file itself, its folder, or the shared data root holding ``folder/filename``."""
    p = Path(path).expanduser()
    if p.is_dir():
        for candidate in (p / filename, p / folder / filename):
            if candidate.is_file():
                return candidate
        return p / filename
    return p


# --- Taiwan: default of credit card clients (UCI 350) --------------------------------------------

_TAIWAN_FEATURES = (
    ["LIMIT_BAL", "SEX", "EDUCATION", "MARRIAGE", "AGE", "PAY_0"]
    + [f"PAY_{i}" for i in range(2, 7)]
    + [f"BILL_AMT{i}" for i in range(1, 7)]
    + [f"PAY_AMT{i}" for i in range(1, 7)]
)
TAIWAN_SCHEMA = TableSchema(
    id_column="ID",
    label_column="default.payment.next.month",
    features=tuple(ColumnSpec(name) for name in _TAIWAN_FEATURES),
)


def load_taiwan_default(path: str | Path, party: str = "taiwan") -> PartyData:
    """UCI "default of credit card clients" (30,000 rows, 23 numeric features, 22.12% default)."""
    return load_table(_resolve(path, "UCI_Credit_Card.csv", "taiwan_default"), TAIWAN_SCHEMA, party, "csv")


# --- The two German credit tables share English attribute names (Groemping's R script) ----------

_GERMAN_NAMES = (
    "status", "duration", "credit_history", "purpose", "amount", "savings", "employment_duration",
    "installment_rate", "personal_status_sex", "other_debtors", "present_residence", "property", "age",
    "other_installment_plans", "housing", "number_credits", "job", "people_liable", "telephone",
    "foreign_worker",
)  # fmt: skip
_LABEL = "default"
_ROW_ID = "row_id"


def _codes(prefix: str, lo: int, hi: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(lo, hi + 1))


# Statlog codes as documented in german.doc (A47 and A95 are documented but never occur).
_STATLOG_CATEGORIES: dict[str, tuple[str, ...]] = {
    "status": _codes("A1", 1, 4),
    "credit_history": _codes("A3", 0, 4),
    "purpose": (*_codes("A4", 0, 9), "A410"),
    "savings": _codes("A6", 1, 5),
    "employment_duration": _codes("A7", 1, 5),
    "personal_status_sex": _codes("A9", 1, 5),
    "other_debtors": _codes("A10", 1, 3),
    "property": _codes("A12", 1, 4),
    "other_installment_plans": _codes("A14", 1, 3),
    "housing": _codes("A15", 1, 3),
    "job": _codes("A17", 1, 4),
    "telephone": _codes("A19", 1, 2),
    "foreign_worker": _codes("A20", 1, 2),
}
# Integer codes from codetable.txt (same 13 qualitative attributes, corrected coding).
_SOUTH_CATEGORIES: dict[str, tuple[str, ...]] = {
    "status": _codes("", 1, 4),
    "credit_history": _codes("", 0, 4),
    "purpose": _codes("", 0, 10),
    "savings": _codes("", 1, 5),
    "employment_duration": _codes("", 1, 5),
    "personal_status_sex": _codes("", 1, 4),
    "other_debtors": _codes("", 1, 3),
    "property": _codes("", 1, 4),
    "other_installment_plans": _codes("", 1, 3),
    "housing": _codes("", 1, 3),
    "job": _codes("", 1, 4),
    "telephone": _codes("", 1, 2),
    "foreign_worker": _codes("", 1, 2),
}
_SOUTH_HEADER = (
    "laufkont", "laufzeit", "moral", "verw", "hoehe", "sparkont", "beszeit", "rate", "famges", "buerge",
    "wohnzeit", "verm", "alter", "weitkred", "wohn", "bishkred", "beruf", "pers", "telef", "gastarb",
)  # fmt: skip


def _german_schema(categories: dict[str, tuple[str, ...]]) -> TableSchema:
    specs = tuple(
        ColumnSpec(n, "category", categories[n]) if n in categories else ColumnSpec(n, "float")
        for n in _GERMAN_NAMES
    )
    return TableSchema(id_column=_ROW_ID, label_column=_LABEL, features=specs)


GERMAN_SCHEMA = _german_schema(_STATLOG_CATEGORIES)
SOUTH_GERMAN_SCHEMA = _german_schema(_SOUTH_CATEGORIES)


def _binary_target(
    raw: np.ndarray, bad: int, good: int, column: str, party: str, path: Path
) -> np.ndarray:
    """Default label (1 = bad) from a good/bad code column; any other code is a data error."""
    values = np.asarray(raw, dtype=np.float64)
    other = ~np.isin(values, (bad, good))
    if other.any():
        shown = ", ".join(str(v) for v in np.unique(raw[other])[:5])
        raise DataValidationError(
            f"column '{column}' must hold only {good} (good) or {bad} (bad) but has "
            f"{int(other.sum())} other value(s): {shown}",
            party=party,
            column=column,
            rows=int(other.sum()),
            path=str(path),
        )
    return (values == bad).astype(np.int8)


def _with_ids_and_label(features: dict[str, np.ndarray], y: np.ndarray) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {_ROW_ID: np.arange(1, y.size + 1).astype(str), _LABEL: y}
    cols.update(features)
    return cols


def load_german_credit(path: str | Path, party: str = "german_credit") -> PartyData:
    """Statlog German credit (``german.data``: 1000 rows, 20 attributes, 30% bad).

    The 13 qualitative A-code attributes are one-hot encoded; ``row_id`` is the 1-based line number.
    """
    file = _resolve(path, "german.data", "german_credit")
    raw = read_columns(
        file,
        party,
        format="csv",
        delimiter=" ",
        column_names=[*_GERMAN_NAMES, "class"],
        string_columns=list(_STATLOG_CATEGORIES),
    )
    y = _binary_target(raw.pop("class"), bad=2, good=1, column="class", party=party, path=file)
    return from_columns(_with_ids_and_label(raw, y), GERMAN_SCHEMA, party, path=str(file))


def load_south_german_credit(path: str | Path, party: str = "south_german_credit") -> PartyData:
    """South German credit (Groemping 2019; ``SouthGermanCredit.asc``: 1000 rows, 30% bad).

    The German header is mapped to English names; label 1 means ``kredit == 0`` (bad), matching
    `load_german_credit`.
    """
    file = _resolve(path, "SouthGermanCredit.asc", "south_german_credit")
    raw = read_columns(
        file,
        party,
        format="csv",
        delimiter=" ",
        string_columns=[
            g for g, e in zip(_SOUTH_HEADER, _GERMAN_NAMES, strict=True) if e in _SOUTH_CATEGORIES
        ],
    )
    expected = [*_SOUTH_HEADER, "kredit"]
    missing = [c for c in expected if c not in raw]
    extra = [c for c in raw if c not in expected]
    if missing or extra:
        raise DataValidationError(
            f"header does not match SouthGermanCredit.asc: missing {missing}, unexpected {extra}",
            party=party,
            column=(missing or extra)[0],
            path=str(file),
        )
    y = _binary_target(raw["kredit"], bad=0, good=1, column="kredit", party=party, path=file)
    features = {english: raw[german] for german, english in zip(_SOUTH_HEADER, _GERMAN_NAMES, strict=True)}
    return from_columns(_with_ids_and_label(features, y), SOUTH_GERMAN_SCHEMA, party, path=str(file))
