"""Read a party's CSV or Parquet file and validate it against the declared schema.

Two readers, one set of rules: `load_table` streams a file, folder or glob in Arrow batches through the
vectorised checks of `sampan.data.stream` (the party's tables); `from_columns` checks columns already in
memory (public datasets, callers' own arrays, `read_columns` for the few callers that want raw columns).
Both give the same arrays and the same `DataValidationError` (party, file, column, rows affected) for the
same table, which tests/test_data_stream.py pins: nothing reaches a learner until every column is checked.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sampan.data._columns import (
    Problem,
    apply_markers,
    check_bool,
    check_category,
    check_ids,
    check_label,
    check_numeric,
)
from sampan.data.missing import missing_columns
from sampan.data.sources import TableFormat, open_source
from sampan.data.stream import BATCH_ROWS, load_source
from sampan.data.stream import layout_problems as _check_layout
from sampan.data.stream import raise_problems as _raise
from sampan.data.table import DataValidationError, PartyData, TableSchema

__all__ = ["load_table", "from_columns", "read_columns"]

_SUFFIXES: dict[str, TableFormat] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _infer_format(path: Path, party: str, format: TableFormat | None) -> TableFormat:
    if format is not None:
        if format not in ("csv", "parquet"):
            raise DataValidationError(
                f"unknown format {format!r}; use 'csv' or 'parquet'", party=party, path=str(path)
            )
        return format
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataValidationError(
            f"cannot tell the table format from the suffix '{path.suffix}'; name the file .csv, .parquet "
            "or .pq, or pass format='csv' / format='parquet'",
            party=party,
            path=str(path),
        )
    return fmt


_ARROW_NULLS = frozenset(pacsv.ConvertOptions().null_values)  # "NA", "N/A", "null", "NaN", "", ...


def _to_numpy(col: pa.ChunkedArray) -> np.ndarray:
    """A column as NumPy: nulls become NaN (numeric) or None (object)."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return np.asarray(col.to_numpy())


def read_columns(
    path: str | Path,
    party: str,
    *,
    format: TableFormat | None = None,
    delimiter: str = ",",
    column_names: Sequence[str] | None = None,
    string_columns: Collection[str] = (),
) -> dict[str, np.ndarray]:
    """Read a file into raw columns (no validation yet).

    ``string_columns`` are read as text so ids keep leading zeros and category codes stay codes;
    ``column_names`` is for header-less files (the first line is then data).
    """
    p = Path(path)
    if not p.exists():
        raise DataValidationError("file not found", party=party, path=str(p))
    if not p.is_file():
        raise DataValidationError("path is not a file", party=party, path=str(p))
    fmt = _infer_format(p, party, format)
    try:
        if fmt == "csv":
            table = pacsv.read_csv(
                p,
                read_options=pacsv.ReadOptions(column_names=list(column_names) if column_names else None),
                parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=pacsv.ConvertOptions(
                    # text columns keep every text (review R13-LOAD-1: Arrow's default null texts "NA", "null",
                    # ... would make a declared category "NA" missing); only the schema's declared markers
                    # (`apply_markers`) and blank cells count as missing there
                    column_types={c: pa.string() for c in string_columns}, strings_can_be_null=False
                ),
            )
        else:
            table = pq.read_table(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataValidationError(f"cannot read the {fmt} file: {exc}", party=party, path=str(p)) from exc
    names = table.column_names
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataValidationError(
            f"column {_quoted(repeated)} appears more than once in the header",
            party=party,
            column=repeated[0],
            path=str(p),
        )
    columns = {name: _to_numpy(table.column(name)) for name in names}
    if fmt == "csv":  # a column read as text that is not declared text (a numeric column holding markers): Arrow's
        # null texts ("NA", "null", ...) stay missing there, as in a numeric column Arrow parsed itself
        for name in set(names) - set(string_columns):
            if columns[name].dtype.kind == "O":
                columns[name] = np.array([None if isinstance(v, str) and v in _ARROW_NULLS else v
                                          for v in columns[name]], dtype=object)
    return columns


def load_table(
    path: str | Path,
    schema: TableSchema,
    party: str,
    format: TableFormat | None = None,
    *,
    dtype: npt.DTypeLike = np.float64,
    batch_rows: int = BATCH_ROWS,
) -> PartyData:
    """Load and validate one party's table from CSV or Parquet (format from the suffix if not given).

    ``path`` may be a file, a folder of files or a glob pattern; it is streamed in batches of ``batch_rows``
    and held once, X as ``dtype`` (float64, or float32 for half the memory): `sampan.data.stream`.
    """
    return load_source(open_source(path, party, format, batch_rows=batch_rows), schema, party, dtype=dtype,
                       batch_rows=batch_rows)


def from_columns(
    columns: Mapping[str, np.ndarray | list],
    schema: TableSchema,
    party: str,
    path: str | None = None,
) -> PartyData:
    """Validate raw columns against ``schema`` and build the party's arrays (one-hot for categories)."""
    _raise(_check_layout(list(columns), schema), party, path)
    arrays = {name: np.asarray(columns[name]) for name in schema.columns()}
    for name, a in arrays.items():
        if a.ndim != 1:
            raise DataValidationError(
                f"column '{name}' must be 1-D, got shape {a.shape}", party=party, column=name, path=path
            )
    lengths = {a.shape[0] for a in arrays.values()}
    if len(lengths) > 1:
        detail = ", ".join(f"'{n}': {a.shape[0]}" for n, a in arrays.items())
        raise DataValidationError(f"columns have different lengths ({detail})", party=party, path=path)
    n = lengths.pop()
    if n == 0:
        where = "" if path is None else f" (file '{path}')"
        raise DataValidationError(f"party '{party}' has no rows{where}", party=party, rows=0, path=path)

    problems: list[Problem] = []
    ids, found = check_ids(schema.id_column, arrays[schema.id_column])
    problems += found
    y: np.ndarray | None = None
    if schema.label_column is not None:
        yv, found = check_label(schema.label_column, arrays[schema.label_column])
        problems += found
        y = yv
    names = schema.feature_names()
    X = np.empty((n, len(names)), dtype=np.float64)
    j = 0
    for spec in schema.features:
        a = apply_markers(arrays[spec.name], spec.missing)
        allow = spec.policy != "error"  # a declared policy takes missing cells (NaN until imputed)
        if spec.kind == "category":
            assert spec.categories is not None
            codes, found = check_category(spec.name, a, spec.categories, allow_missing=allow)
            block = X[:, j : j + spec.width]
            block[:] = 0.0
            ok = codes >= 0
            block[np.flatnonzero(ok), codes[ok]] = 1.0
        else:
            if spec.kind == "bool":
                values, found = check_bool(spec.name, a, allow_missing=allow)
            else:
                values, found = check_numeric(spec.name, a, spec.kind, allow_missing=allow)
            X[:, j] = values
            if spec.policy == "indicator":  # the 0/1 `<name>_missing` column, computed here, inside the party
                X[:, j + 1] = np.isnan(values).astype(np.float64)
        problems += found
        j += spec.width
    _raise(problems, party, path)
    return PartyData(
        party=party,
        ids=ids,
        X=X,
        y=None if y is None else y.astype(np.int8),
        feature_names=names,
        missing_columns=missing_columns(schema),
    )
