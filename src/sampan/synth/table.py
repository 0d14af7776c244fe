"""Tables as the synthesiser sees them: one NumPy array per column, checked against a `SynthSchema`.

Categorical values are strings (``object`` arrays) so that CSV text, integer codes and booleans all
compare the same way; numeric values are float64 clipped to the column's public bounds (clipping is
what bounds the sensitivity; values outside are a property of the data owner's table, not an error).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from sampan.data import DataValidationError, PartyData, TableSchema
from sampan.data.loaders import read_columns
from sampan.errors import DataError
from sampan.files import atomic_write_bytes
from sampan.synth.schema import SynthColumn, SynthSchema, _as_text

__all__ = [
    "Table",
    "TableError",
    "category_codes",
    "n_rows",
    "read_csv_table",
    "read_csv_text",
    "table_from_party_data",
    "validate_table",
    "write_csv_table",
]

Table = dict[str, np.ndarray]


class TableError(DataError):
    """A table that does not fit its schema; names the source, column and how many rows."""


def n_rows(table: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(table.values()))) if table else 0


def _rows(mask: np.ndarray, limit: int = 3) -> str:
    """Where the bad values are, as 1-based data-row numbers: never the values themselves, which are
    records (an error from a party's agent may end up in a coordinator's log)."""
    where = np.flatnonzero(mask)[: limit + 1] + 1
    return ", ".join(str(int(r)) for r in where[:limit]) + (", ..." if where.size > limit else "")


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _numeric(name: str, raw: np.ndarray, spec: SynthColumn, source: str) -> np.ndarray:
    try:
        values = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        bad_rows = np.array([not _is_number(v) for v in np.asarray(raw, dtype=object).tolist()])
        raise TableError(f"{source}: column '{name}' is numeric but holds non-numeric values "
                         f"(data rows {_rows(bad_rows)})") from None
    bad = ~np.isfinite(values)
    if bad.any():
        raise TableError(f"{source}: column '{name}' has {int(bad.sum())} missing or non-finite value(s); "
                         "impute or drop them before synthesis")
    assert spec.bounds is not None
    values = np.clip(values, *spec.bounds)
    return np.round(values) if spec.integer else values


def _categorical(name: str, raw: np.ndarray, spec: SynthColumn, source: str) -> np.ndarray:
    text = _as_text(np.asarray(raw))
    unknown = ~np.isin(text, np.asarray(spec.categories, dtype=object))
    if unknown.any():
        raise TableError(
            f"{source}: column '{name}' has {int(unknown.sum())} value(s) outside its declared categories "
            f"{list(spec.categories or ())} (data rows {_rows(unknown)}); declare them in the schema"
        )
    return text


def validate_table(columns: Mapping[str, np.ndarray], schema: SynthSchema, source: str = "table") -> Table:
    """Check every schema column is present, of one length, and inside its declared domain."""
    missing = [n for n in schema.names if n not in columns]
    if missing:
        raise TableError(f"{source}: missing column(s) {missing} declared in the schema")
    lengths = {n: len(np.asarray(columns[n])) for n in schema.names}
    if len(set(lengths.values())) > 1:
        raise TableError(f"{source}: columns have different lengths {lengths}")
    if not lengths or next(iter(lengths.values())) == 0:
        raise TableError(f"{source}: the table has no rows")
    out: Table = {}
    for spec in schema.columns:
        raw = np.asarray(columns[spec.name])
        if raw.ndim != 1:
            raise TableError(f"{source}: column '{spec.name}' must be 1-D, got shape {raw.shape}")
        if spec.kind == "numeric":
            out[spec.name] = _numeric(spec.name, raw, spec, source)
        else:
            out[spec.name] = _categorical(spec.name, raw, spec, source)
    return out


def category_codes(values: np.ndarray, spec: SynthColumn) -> np.ndarray:
    """Index of each (validated) value in the column's declared categories."""
    cats = np.asarray(spec.categories, dtype=object)
    order = np.argsort(cats)
    pos = np.searchsorted(cats[order], values)
    return order[np.clip(pos, 0, len(cats) - 1)].astype(np.int64)


def read_csv_table(path: str | Path, schema: SynthSchema | None = None,
                   text_columns: tuple[str, ...] = ()) -> Table:
    """Raw columns of a CSV file; categorical columns of ``schema`` are read as text (codes stay codes)."""
    text = list(text_columns)
    if schema is not None:
        text += [c.name for c in schema.columns if c.kind == "categorical"]
    try:
        raw = read_columns(path, "synth", format="csv", string_columns=text)
    except DataValidationError as exc:
        raise TableError(str(exc).replace("party 'synth', ", "")) from None
    if schema is None:
        return raw
    extra = [n for n in raw if n not in schema.names]
    columns = {n: raw[n] for n in raw if n not in extra}
    return validate_table(columns, schema, f"file '{path}'")


def read_csv_text(path: str | Path) -> Table:
    """Every column of a CSV file as text, cell by cell (missing cells as None).

    For a table without a declared schema: a reader that infers each column's type from the whole file
    lets one record change how every other cell of its column is read (one ``unknown`` among ``TRUE`` /
    ``FALSE`` turns booleans into text, and ``false`` into ``FALSE``), so nothing here is inferred; the
    caller parses each cell on its own (`sampan.synth.domain`)."""
    try:
        with pacsv.open_csv(path) as reader:  # the header only: pyarrow's own parsing, so names match
            names = reader.schema.names
    except (pa.ArrowInvalid, OSError) as exc:
        raise TableError(f"file '{path}': cannot read the csv file: {exc}") from None
    try:
        return read_columns(path, "synth", format="csv", string_columns=names)
    except DataValidationError as exc:
        raise TableError(str(exc).replace("party 'synth', ", "")) from None


def write_csv_table(table: Mapping[str, np.ndarray], schema: SynthSchema, path: str | Path) -> Path:
    """CSV in schema column order; integer columns as integers. Written atomically."""
    arrays: dict[str, pa.Array] = {}
    for spec in schema.columns:
        values = np.asarray(table[spec.name])
        if spec.kind == "categorical":
            arrays[spec.name] = pa.array([str(v) for v in values], pa.string())
        elif spec.integer:
            arrays[spec.name] = pa.array(values.astype(np.int64))
        else:
            arrays[spec.name] = pa.array(values.astype(np.float64))
    sink = pa.BufferOutputStream()
    pacsv.write_csv(pa.table(arrays), sink)
    return atomic_write_bytes(path, sink.getvalue().to_pybytes())


def table_from_party_data(data: PartyData, schema: TableSchema, label: str | None = None) -> Table:
    """Undo the one-hot encoding of a loaded `PartyData` (columns by declared name, label as text)."""
    out: Table = {}
    if data.y is not None:
        out[label or schema.label_column or "label"] = np.array([str(int(v)) for v in data.y], dtype=object)
    j = 0
    for spec in schema.features:
        block = data.X[:, j: j + spec.width]
        if spec.kind == "category":
            assert spec.categories is not None
            out[spec.name] = np.asarray(spec.categories, dtype=object)[block.argmax(axis=1)]
        elif spec.kind == "bool":
            out[spec.name] = np.where(block[:, 0] != 0.0, "true", "false").astype(object)
        else:
            out[spec.name] = block[:, 0].copy()
        j += spec.width
    return out
