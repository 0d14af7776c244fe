"""Streaming party data: validate a table batch by batch and hold it once, in a compact form.

`load_source` reads any `TableSource` (Parquet/CSV files, folders, globs: `sampan.data.sources`; a SQL
query: `sampan.data.sql_source`) as Arrow record batches, checks each batch with vectorised code
(`_arrow_checks`), and writes it straight into the party's final arrays: X in float64 (the default, so
results do not move) or float32 (half the memory: values round to 24 bits, so integers above 2**24 lose
their last digits, tiny values flush to 0, and a finite value beyond float32's range is refused naming its
column, never stored as an infinity), y as int8, ids as Arrow text until the end. Peak memory
is the result plus about one batch: Parquet footers give the row count up front; for CSV and SQL the
arrays grow in place (`ndarray.resize`, a realloc) from an estimate, and are trimmed once at the end.

Problems are gathered over the whole stream and raised once, with the same messages and
`DataValidationError` fields as the whole-table path (`from_columns`), rows counted over the whole table.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sampan.data import _arrow_checks as ac
from sampan.data._columns import Problem, plural
from sampan.data.missing import missing_columns
from sampan.data.sources import Retype, TableSource
from sampan.data.table import DataValidationError, PartyData, TableSchema

__all__ = ["BATCH_ROWS", "load_source", "raise_problems", "layout_problems"]

BATCH_ROWS = 1 << 16  # rows per validated batch: ~16 MB of float64 at 30 columns
FLOAT32_MAX = float(np.finfo(np.float32).max)


def raise_problems(problems: list[Problem], party: str, path: str | None) -> None:
    """Raise one error carrying every problem; its column/rows fields describe the first."""
    if not problems:
        return
    first = problems[0]
    if len(problems) == 1:
        message = first.message
    else:
        message = f"{len(problems)} problems:\n  - " + "\n  - ".join(p.message for p in problems)
    raise DataValidationError(message, party=party, column=first.column, rows=first.rows, path=path)


def _quoted(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def layout_problems(names: list[str], schema: TableSchema) -> list[Problem]:
    """Declared columns the header lacks, and columns it has that are not declared."""
    declared = schema.columns()
    missing = [c for c in declared if c not in names]
    extra = [c for c in names if c not in set(declared)]
    problems: list[Problem] = []
    if missing:
        problems.append(Problem(missing[0], None, f"missing declared column(s) {_quoted(missing)}"))
    if extra:
        problems.append(Problem(extra[0], None, f"undeclared column(s) {_quoted(extra)}; "
                                                "declare them in the schema or drop them from the table"))
    return problems


def text_columns(schema: TableSchema) -> list[str]:
    """Columns read as text: the id (leading zeros) and categories (codes stay codes)."""
    return [schema.id_column] + [f.name for f in schema.features if f.kind == "category"]


class _Checks:
    """Every column's checks for one table, with their tallies over all batches."""

    def __init__(self, schema: TableSchema, dtype: np.dtype = np.dtype(np.float64)) -> None:
        self.schema = schema
        self.narrow = dtype == np.dtype(np.float32)  # finite values beyond float32's range are refused
        self.tallies: dict[str, dict[str, ac.Tally]] = {}
        self.unknown: dict[str, dict[str, int]] = {}
        self.id_chunks: list[pa.Array] = []
        self.id_tally = {"missing": ac.Tally()}
        label = schema.label_column
        if label is not None:
            self.tallies[label] = {"missing": ac.Tally(), "bad": ac.Tally(limit=5)}
        for spec in schema.features:
            kinds = {"category": ("missing", "unknown"), "bool": ("missing", "bad")}.get(
                spec.kind, ("missing", "bad", "fraction"))
            self.tallies[spec.name] = {k: ac.Tally() for k in kinds}
            if self.narrow and spec.kind in ("float", "int"):
                self.tallies[spec.name]["wide"] = ac.Tally()
            self.unknown[spec.name] = {}

    def batch(self, rb: pa.RecordBatch, offset: int, X: np.ndarray, y: np.ndarray | None,
              hashes: np.ndarray) -> None:
        """Check one batch starting at table row ``offset``; write its rows into ``X``, ``y`` and the id
        ``hashes`` (views of the party's arrays)."""
        schema = self.schema
        ids = ac.normalise(rb.column(schema.id_column))
        missing = ac.missing_of(ids)
        self.id_tally["missing"].add(missing, offset)
        text = ac.canonical_text(ids, missing)
        self.id_chunks.append(text)
        hashes[:] = ac.id_hashes(text)
        if schema.label_column is not None:
            values = ac.check_binary(ac.normalise(rb.column(schema.label_column)), *ac.LABEL_SETS, offset,
                                     self.tallies[schema.label_column])
            assert y is not None
            y[:] = np.where(np.isnan(values), 0, values).astype(np.int8)
        j = 0
        for spec in schema.features:
            a = ac.apply_markers(ac.normalise(rb.column(spec.name)), spec.missing, spec.kind in ("float", "int"))
            allow = spec.policy != "error"
            tallies = self.tallies[spec.name]
            if spec.kind == "category":
                assert spec.categories is not None
                codes = ac.check_category(a, spec.categories, allow, offset, tallies, self.unknown[spec.name])
                block = X[:, j: j + spec.width]
                block[:] = 0
                ok = codes >= 0
                block[np.flatnonzero(ok), codes[ok]] = 1
            else:
                if spec.kind == "bool":
                    values = ac.check_binary(a, *ac.BOOL_SETS, offset, tallies)
                else:
                    values = ac.check_numeric(a, spec.kind, offset, tallies)
                    if self.narrow:  # float32 would store them as +-inf (review R15-DATA-3): refused below
                        wide = np.abs(np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)) > FLOAT32_MAX
                        tallies["wide"].add(wide, offset)
                        values = np.where(wide, np.nan, values)
                X[:, j] = values
                if spec.policy == "indicator":
                    X[:, j + 1] = np.isnan(values)
            j += spec.width

    def problems(self, hashes: np.ndarray) -> list[Problem]:
        """Every problem, in the order of the whole-table path: id, label, then features as declared.
        ``hashes`` (every row's id hash) is sorted in place."""
        schema = self.schema
        out: list[Problem] = []
        idc = schema.id_column
        if self.id_tally["missing"].count:
            out.append(ac.missing_message(idc, self.id_tally["missing"], "id"))
        hashes.sort()  # in place: 8 bytes a row, no second copy
        if self.id_tally["missing"].count or np.any(hashes[1:] == hashes[:-1]):
            out += self._duplicates()  # equal hashes (or blank ids): settled on the texts
        if schema.label_column is not None:
            col, t = schema.label_column, self.tallies[schema.label_column]
            if t["missing"].count:
                out.append(ac.missing_message(col, t["missing"], "label"))
            if t["bad"].count:
                k = t["bad"].count
                out.append(Problem(col, k, f"column '{col}' (label) must be binary 0/1 but has "
                                           f"{plural(k, 'other value')} ({t['bad'].rows}); offending distinct "
                                           f"values: {t['bad'].examples}"))
        for spec in schema.features:
            col, t = spec.name, self.tallies[spec.name]
            if t["missing"].count and spec.policy == "error":
                out.append(ac.missing_message(col, t["missing"]))
            if spec.kind == "category":
                if t["unknown"].count:
                    k = t["unknown"].count
                    out.append(Problem(col, k, f"column '{col}' has {plural(k, 'value')} not in its declared "
                                               f"categories ({t['unknown'].rows}): "
                                               f"{ac.unknown_listing(self.unknown[col])}; declared: "
                                               f"{', '.join(spec.categories or ())}"))
                continue
            bad = t["bad"]
            if bad.count and spec.kind == "bool":
                out.append(Problem(col, bad.count, f"column '{col}' is declared bool but has "
                                                   f"{plural(bad.count, 'value')} other than true/false, yes/no "
                                                   f"or 1/0 ({bad.rows}; e.g. {bad.examples})"))
            elif bad.count:
                out.append(Problem(col, bad.count, f"column '{col}' is declared {spec.kind} but has "
                                                   f"{plural(bad.count, 'non-numeric value')} ({bad.rows}; e.g. "
                                                   f"{bad.examples}); if they mark missing values, "
                                                   f"{ac.HOW_TO_FIX}"))
            wide = t.get("wide")
            if wide is not None and wide.count:
                out.append(Problem(col, wide.count, f"column '{col}' has {plural(wide.count, 'value')} beyond "
                                                    f"float32's range (|x| > 3.4e38; {wide.rows}); load the "
                                                    "table as float64 (dtype = \"float64\")"))
            frac = t.get("fraction")
            if frac is not None and frac.count:
                out.append(Problem(col, frac.count, f"column '{col}' is declared int but has "
                                                    f"{plural(frac.count, 'non-integer value')} ({frac.rows}; "
                                                    f"e.g. {frac.examples})"))
        return out

    def ids(self) -> pa.ChunkedArray:
        return pa.chunked_array(self.id_chunks, type=pa.string())

    def _duplicates(self) -> list[Problem]:
        """Repeated ids over every batch, exactly (first occurrences kept): run only when two id hashes are
        equal, so a clean table pays one sort of 8 bytes a row."""
        ids = self.ids()
        n = len(ids)
        blank = self.id_tally["missing"].count
        distinct = pc.count_distinct(ids).as_py() - (1 if blank else 0)
        if distinct == n - blank:
            return []
        codes = np.asarray(pc.dictionary_encode(ids.combine_chunks()).indices.to_numpy(zero_copy_only=False))
        present = np.arange(n)
        if blank:  # missing ids (text "") are reported as missing, not as repeats
            present = np.flatnonzero(codes != codes[pc.index(ids, "").as_py()])
        _, first, inverse = np.unique(codes[present], return_index=True, return_inverse=True)
        dup_rows = present[first[inverse] != np.arange(present.size)]
        tally = ac.Tally()
        mask = np.zeros(n, dtype=bool)
        mask[dup_rows] = True
        tally.add(mask, 0, ids.combine_chunks())
        col = self.schema.id_column
        return [Problem(col, tally.count, f"column '{col}' (id) has {plural(tally.count, 'duplicate id')} "
                                          f"({tally.rows}; e.g. {tally.examples})")]


class _Rows:
    """The party's arrays, preallocated from a row count or grown in place from an estimate."""

    def __init__(self, width: int, dtype: np.dtype, labelled: bool) -> None:
        self.width, self.cap = width, 0
        self.X = np.empty((0, width), dtype=dtype)
        self.y = np.empty(0, dtype=np.int8) if labelled else None
        self.hashes = np.empty(0, dtype=np.uint64)  # each row's id hash (`_arrow_checks.id_hashes`)

    def reserve(self, rows: int, exact: bool = False) -> None:
        """Room for ``rows`` rows; growing by half again at least, unless the count is exact. The resize is
        a realloc (no second copy of X alive); the data never has views held across it."""
        if rows <= self.cap:
            return
        cap = rows if exact else max(rows, self.cap + self.cap // 2)
        if self.cap == 0:  # the first allocation: np.empty touches no page until a row is written
            self.X = np.empty((cap, self.width), dtype=self.X.dtype)
            self.y = None if self.y is None else np.empty(cap, dtype=np.int8)
            self.hashes = np.empty(cap, dtype=np.uint64)
        else:
            self.X.resize((cap, self.width), refcheck=False)
            self.hashes.resize(cap, refcheck=False)
            if self.y is not None:
                self.y.resize(cap, refcheck=False)
        self.cap = cap

    def trim(self, rows: int) -> None:
        if rows != self.cap:
            self.X.resize((rows, self.width), refcheck=False)
            self.hashes.resize(rows, refcheck=False)
            if self.y is not None:
                self.y.resize(rows, refcheck=False)
            self.cap = rows


def _slices(rb: pa.RecordBatch, rows: int) -> Iterator[pa.RecordBatch]:
    for start in range(0, rb.num_rows, rows):
        yield rb.slice(start, rows)


def _load(source: TableSource, schema: TableSchema, party: str, dtype: np.dtype, batch_rows: int,
          all_text: bool) -> PartyData:
    checks = _Checks(schema, dtype)
    out = _Rows(schema.width, dtype, schema.label_column is not None)
    hint = source.row_hint(None)
    if hint is not None:
        out.reserve(hint, exact=True)
    n = 0
    part = rb = piece = None
    for part in source.parts(party, text_columns(schema), all_text):
        raise_problems(layout_problems(part.names, schema), party, part.path)
        for rb in part.batches():
            if hint is None and rb.num_rows:
                hint = source.row_hint(rb.num_rows)
                out.reserve(hint or rb.num_rows)
            for piece in _slices(rb, batch_rows):
                m = piece.num_rows
                out.reserve(n + m)
                checks.batch(piece, n, out.X[n: n + m], None if out.y is None else out.y[n: n + m],
                             out.hashes[n: n + m])
                n += m
            rb = piece = None  # the last batch holds its whole Parquet row group's buffers
    part = None
    pa.default_memory_pool().release_unused()
    if n == 0:
        raise DataValidationError(f"party '{party}' has no rows (file '{source.label}')", party=party, rows=0,
                                  path=source.label)
    out.trim(n)
    raise_problems(checks.problems(out.hashes), party, source.label)
    out.hashes = np.empty(0, dtype=np.uint64)
    ids = np.empty(n, dtype=object)  # the public form: Python strings, made chunk by chunk as Arrow's are freed
    start = 0
    chunks, checks.id_chunks = checks.id_chunks, []
    chunks.reverse()
    while chunks:
        chunk = chunks.pop()
        ids[start: start + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
        start += len(chunk)
        if len(chunks) % 16 == 0:
            pa.default_memory_pool().release_unused()  # hand the freed Arrow text back before more strings
    del chunk
    return PartyData(party=party, ids=ids, X=out.X, y=out.y, feature_names=schema.feature_names(),
                     missing_columns=missing_columns(schema))


def load_source(source: TableSource, schema: TableSchema, party: str, *, dtype: npt.DTypeLike = np.float64,
                batch_rows: int = BATCH_ROWS) -> PartyData:
    """Validate ``source`` batch by batch against ``schema`` and hold it once (X as ``dtype``)."""
    kind = np.dtype(dtype)
    if kind not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"dtype must be float64 or float32, got {kind}")
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    try:
        return _load(source, schema, party, kind, batch_rows, all_text=False)
    except Retype:  # a later CSV block broke the types Arrow guessed: every column as text this time
        return _load(source, schema, party, kind, batch_rows, all_text=True)
