"""Held-out rows a bank chooses (issue 13, item 6): an explicit test file, or its newest rows by a date column.

Simulation only, at each party: ``[[parties]] test_path`` (or ``[data] test_path`` with ``{party}`` in it)
makes that file the party's holdout and its ``path`` all of its training rows; ``[data] date_column`` names a
column of each party's file (read, then dropped: it is not a feature) and holds out the party's newest
``test_fraction`` of rows, an out-of-time test set. Both are computed where the data lives; nothing here is sent
anywhere, and the holdout counts leave as they always do
(`describe`). `holdout_ids` gives each party's held-out ids, for the bank to export (`sampan runs holdout`).
What each role learns: nothing new (the split is local; only the usual holdout counts leave).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import numpy as np

from sampan.data import DataValidationError, PartyData, TableSchema, load_table
from sampan.data.loaders import from_columns, read_columns
from sampan.horizontal.row_split import split_table

__all__ = ["dated_split", "explicit_split", "holdout_ids", "load_dated_table", "own_data_splits"]

_YEAR_MONTH = re.compile(r"\d{4}-\d{2}")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}")  # then `datetime.fromisoformat` (a time part may follow)


def explicit_split(name: str, train: PartyData, test_path: str, schema: TableSchema,
                   fmt: Any = None) -> tuple[PartyData, PartyData]:
    """(all rows of the training file, the test file's rows); an id in both is an error naming them."""
    test = load_table(test_path, schema, name, fmt)
    both = sorted(set(map(str, train.ids)) & set(map(str, test.ids)))
    if both:
        raise DataValidationError(f"party {name!r}: ids {both[:10]} are both in its training file and in its "
                                  f"test file {test_path!r}; a held-out row must not be trained on", party=name)
    return train, test


def load_dated_table(path: str, schema: TableSchema, party: str, date_column: str,
                     fmt: Any = None) -> tuple[PartyData, np.ndarray]:
    """The party's table (the date column dropped) and its dates as text, one per row."""
    text = [schema.id_column, date_column, *(f.name for f in schema.features if f.kind == "category")]
    columns = dict(read_columns(path, party, format=fmt, string_columns=text))
    if date_column not in columns:
        raise DataValidationError(f"party {party!r}: file {path!r} has no date column {date_column!r} "
                                  "([data] date_column)", party=party)
    dates = np.array([str(v).strip() for v in columns.pop(date_column)], dtype=object)
    empty = [i + 2 for i, v in enumerate(dates) if v in ("", "None", "nan")]
    if empty:
        raise DataValidationError(f"party {party!r}: file {path!r}, column {date_column!r}: rows {empty[:10]} have "
                                  "no date; every row needs one for an out-of-time split", party=party)
    return from_columns(columns, schema, party, path=str(path)), dates


def _parsed(value: str, date_format: str | None) -> datetime:
    """One date: by ``date_format`` when given, else ISO only (text order would misplace 31/01 after 01/12)."""
    if date_format is not None:
        return datetime.strptime(value, date_format)
    if _YEAR_MONTH.fullmatch(value):
        return datetime.strptime(value, "%Y-%m")
    if not _ISO.match(value):
        raise ValueError(value)
    return datetime.fromisoformat(value).replace(tzinfo=None)


def _order_key(name: str, dates: np.ndarray, column: str, where: str, date_format: str | None) -> np.ndarray:
    """Numbers sort as numbers (a day index, YYYYMM); anything else is parsed as a date (ISO, or ``date_format``),
    never sorted as text; a value that does not parse is an error naming the party, file, column and rows."""
    if date_format is None:
        try:
            return np.array([float(v) for v in dates])
        except ValueError:
            pass
    parsed, bad = [], []
    for row, value in enumerate(dates):
        try:
            parsed.append(_parsed(str(value), date_format).timestamp())
        except (ValueError, OverflowError):
            bad.append(row + 2)
    if bad:
        how = f"[data] date_format {date_format!r}" if date_format else "an ISO date (YYYY-MM-DD, YYYY-MM)"
        raise DataValidationError(f"party {name!r}: {where}column {column!r}: rows {bad[:10]} are not {how} (e.g. "
                                  f"{str(dates[bad[0] - 2])!r}); name the format with [data] date_format "
                                  "(e.g. '%d/%m/%Y') so the newest rows are held out", party=name)
    return np.array(parsed)


def dated_split(name: str, table: PartyData, dates: np.ndarray, test_fraction: float, *, column: str = "date",
                path: str | None = None, date_format: str | None = None,
                consume: bool = False) -> tuple[PartyData, PartyData]:
    """The newest ``test_fraction`` of rows (at least one) held out; ties by id so the split is deterministic.
    With ``consume`` the table is handed over and its matrix reused for the training rows (`split_table`)."""
    where = f"file {path!r}, " if path else ""
    order = np.lexsort((np.array([str(i) for i in table.ids]), _order_key(name, dates, column, where, date_format)))
    n_test = max(1, int(round(test_fraction * len(order))))
    if n_test >= len(order):
        raise DataValidationError(f"party {name!r}: {len(order)} rows are too few for an out-of-time split",
                                  party=name)
    test = np.zeros(len(order), dtype=bool)
    test[order[-n_test:]] = True
    return split_table(table, test, consume=consume)


def holdout_ids(splits: dict[str, Any]) -> dict[str, list[str]]:
    """Each party's held-out ids (splits: anything with ``.test``), for export at that party."""
    return {name: [str(i) for i in split.test.ids] for name, split in sorted(splits.items())}


def own_data_splits(config: Any, seed: int) -> dict[str, Any]:
    """Every [[parties]] split with these choices: test_path, else the date column, else the seeded random split."""
    from sampan.horizontal.simulation import PartySplit, split_parties, table_schema

    schema = table_schema(config.schema_)
    splits: dict[str, Any] = {}
    for party in config.parties:
        test_path = party.test_path or (config.data.test_path.replace("{party}", party.name)
                                        if config.data.test_path else None)
        if test_path is not None:
            splits[party.name] = PartySplit(*explicit_split(
                party.name, load_table(party.path, schema, party.name, party.format), test_path, schema,
                party.format))
        elif config.data.date_column is not None:
            table, dates = load_dated_table(party.path, schema, party.name, config.data.date_column, party.format)
            splits[party.name] = PartySplit(*dated_split(
                party.name, table, dates, config.data.test_fraction, column=config.data.date_column,
                path=str(party.path), date_format=config.data.date_format, consume=True))
        else:
            splits.update(split_parties({party.name: load_table(party.path, schema, party.name, party.format)},
                                        config.data.test_fraction, seed, consume=True))
    return splits
