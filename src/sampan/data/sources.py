"""Where a party's table comes from: Parquet or CSV files (one file, a folder, a glob) read as Arrow batches.

A source yields `SourcePart`s (one per file, or one per SQL query: `sampan.data.sql_source`), each with its
header and an iterator of record batches, so nothing here holds more than one batch of a table. Parquet
files say their row counts in their footers (the loader preallocates from them); a CSV file does not, so
its source estimates the count from the file size and the first block.

CSV cells keep the old loader's typing: ids and category columns are text (leading zeros, declared
categories such as "NA" kept), other columns are typed by Arrow from the first block. A later block that
does not fit that type (ints, then "1.5" or "oops") stops the stream with `Retype`; the loader then reads
the file again with every column as text, which the checks parse themselves.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sampan.data.table import DataValidationError

__all__ = ["CsvSource", "ParquetSource", "Retype", "SourcePart", "Stamp", "TableFormat", "TableSource", "open_source",
           "stamp"]

TableFormat = Literal["csv", "parquet"]
SUFFIXES: dict[str, TableFormat] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
ARROW_NULLS = frozenset(pacsv.ConvertOptions().null_values)  # "NA", "N/A", "null", "NaN", "", ...
CSV_BLOCK_BYTES = 4 << 20
PARQUET_BUFFER_BYTES = 64 << 10  # read buffer per column of a row group larger than a batch
PARQUET_SLICE_ROWS = 1 << 13  # rows decoded at a time from such a group: beside each column's dictionary page
# (up to ~2 MiB a column decoded, pyarrow writes 1 MiB pages), the decoded slice stays small


class Retype(Exception):
    """A CSV block did not fit the column types Arrow guessed from the first block: read again as text."""


@dataclass
class SourcePart:
    """One file (or query) of a source: where it is (for errors), its header, and its batches."""

    path: str
    names: list[str]
    batches: Callable[[], Iterator[pa.RecordBatch]]


class TableSource(Protocol):
    """What the streaming loader reads: parts in a fixed order, and a row count when it is known."""

    label: str  # the file, folder, glob or redacted URL named in errors

    def parts(self, party: str, text_columns: Collection[str], all_text: bool) -> Iterator[SourcePart]: ...

    def row_hint(self, first_batch_rows: int | None) -> int | None: ...


def _files(path: Path, party: str, format: TableFormat | None) -> tuple[list[Path], TableFormat]:
    """A file, a folder's table files or a glob's matches (sorted), and their one format.

    A path that exists is that file or folder, even when its name holds ``*?[`` (`loans[2024].csv` is a
    literal name, not a character class: review R15-DATA-1); only a path that does not exist is a pattern."""
    text = str(path)
    if not path.exists() and any(ch in text for ch in "*?["):
        files = [Path(f) for f in sorted(glob.glob(text)) if os.path.isfile(f)]
        if not files:
            raise DataValidationError("no file matches the pattern", party=party, path=text)
    elif not path.exists():
        raise DataValidationError("file not found", party=party, path=text)
    elif path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and (
            f.suffix.lower() in SUFFIXES if format is None else f.suffix.lower() in
            {s for s, fmt in SUFFIXES.items() if fmt == format}))
        if not files:
            raise DataValidationError("the folder holds no .csv, .parquet or .pq file", party=party, path=text)
    elif not path.is_file():
        raise DataValidationError("path is not a file", party=party, path=text)
    else:
        files = [path]
    if format is not None:
        if format not in ("csv", "parquet"):
            raise DataValidationError(f"unknown format {format!r}; use 'csv' or 'parquet'", party=party, path=text)
        return files, format
    formats = {SUFFIXES.get(f.suffix.lower()) for f in files}
    if None in formats:
        suffix = next(f.suffix for f in files if f.suffix.lower() not in SUFFIXES)
        raise DataValidationError(
            f"cannot tell the table format from the suffix '{suffix}'; name the file .csv, .parquet "
            "or .pq, or pass format='csv' / format='parquet'", party=party, path=text)
    if len(formats) > 1:
        raise DataValidationError("the files mix CSV and Parquet; keep one format per dataset", party=party,
                                  path=text)
    fmt = formats.pop()
    assert fmt is not None
    return files, fmt


Stamp = tuple[tuple[str, int, int], ...]


def stamp(path: str | Path) -> Stamp | None:
    """Every file a path stands for (the file, a folder's files, a glob's matches) as (name, mtime, size):
    a holder of the loaded table compares stamps to see that a part file was replaced, added or removed
    (review R15-DATA-5); None when the path cannot be listed."""
    p = Path(path)
    try:
        if p.exists():
            files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
        else:
            files = [Path(f) for f in sorted(glob.glob(str(p))) if os.path.isfile(f)]
        out = []
        for f in files:
            info = f.stat()
            out.append((str(f), info.st_mtime_ns, info.st_size))
    except OSError:
        return None
    return tuple(out)


def _repeated(names: list[str], party: str, path: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataValidationError(
            f"column {', '.join(repr(n) for n in repeated)} appears more than once in the header",
            party=party, column=repeated[0], path=path)


class ParquetSource:
    """Parquet file(s): one row group at a time, cut into batches, a group larger than a batch decoded in
    slices (so memory does not follow the writer's row-group size; each column still holds its dictionary
    page while its group is read, up to ~2 MiB a column); exact row count from the footers."""

    def __init__(self, files: list[Path], label: str, batch_rows: int) -> None:
        self.files, self.label, self.batch_rows = files, label, batch_rows

    def row_hint(self, first_batch_rows: int | None) -> int | None:
        try:
            return sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)
        except (pa.ArrowInvalid, OSError):
            return None  # the read itself names the bad file

    def parts(self, party: str, text_columns: Collection[str], all_text: bool) -> Iterator[SourcePart]:
        for f in self.files:
            try:
                pf = pq.ParquetFile(f, pre_buffer=False)
                names = list(pf.schema_arrow.names)
            except (pa.ArrowInvalid, OSError) as exc:
                raise DataValidationError(f"cannot read the parquet file: {exc}", party=party, path=str(f)) from exc
            _repeated(names, party, str(f))

            def batches(pf: pq.ParquetFile = pf, f: Path = f) -> Iterator[pa.RecordBatch]:
                # one row group at a time (`iter_batches` over many groups reads ahead: 4x the memory on small
                # groups), and a group larger than a batch decoded a batch at a time: writers make 1Mi-row or
                # 128 MB groups, whose whole decoded float64 would dwarf the batch (review R15-DATA-7)
                try:
                    for group in range(pf.metadata.num_row_groups):
                        if pf.metadata.row_group(group).num_rows <= self.batch_rows:
                            yield from pf.read_row_group(group).to_batches(max_chunksize=self.batch_rows)
                        else:  # pages read through a small buffer, not each column chunk whole
                            big = pq.ParquetFile(f, pre_buffer=False, buffer_size=PARQUET_BUFFER_BYTES)
                            yield from big.iter_batches(batch_size=min(self.batch_rows, PARQUET_SLICE_ROWS),
                                                        row_groups=[group], use_threads=False)
                except (pa.ArrowInvalid, OSError) as exc:
                    raise DataValidationError(f"cannot read the parquet file: {exc}", party=party,
                                              path=str(f)) from exc

            yield SourcePart(str(f), names, batches)


class CsvSource:
    """CSV file(s) through Arrow's streaming reader, one block (``block_bytes``) at a time."""

    def __init__(self, files: list[Path], label: str, delimiter: str = ",",
                 block_bytes: int = CSV_BLOCK_BYTES) -> None:
        self.files, self.label, self.delimiter, self.block_bytes = files, label, delimiter, block_bytes

    def row_hint(self, first_batch_rows: int | None) -> int | None:
        """Rows estimated from the bytes of all files and the rows of the first block (a little over)."""
        if not first_batch_rows:
            return None
        size = sum(f.stat().st_size for f in self.files)
        if len(self.files) == 1 and size <= self.block_bytes:
            return first_batch_rows
        return int(size / self.block_bytes * first_batch_rows * 1.02) + first_batch_rows

    def parts(self, party: str, text_columns: Collection[str], all_text: bool) -> Iterator[SourcePart]:
        for f in self.files:
            reader = self._open(f, party, text_columns, all_text)
            names = list(reader.schema.names)
            _repeated(names, party, str(f))
            text = set(text_columns)

            def batches(reader: pacsv.CSVStreamingReader = reader, f: Path = f,
                        text: set[str] = text) -> Iterator[pa.RecordBatch]:
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        return
                    except pa.ArrowInvalid as exc:
                        if not all_text and "conversion error" in str(exc):
                            raise Retype(str(exc)) from exc
                        raise DataValidationError(f"cannot read the csv file: {exc}", party=party,
                                                  path=str(f)) from exc
                    yield _arrow_nulls(batch, text)

            yield SourcePart(str(f), names, batches)

    def _open(self, f: Path, party: str, text_columns: Collection[str], all_text: bool) -> pacsv.CSVStreamingReader:
        try:
            columns = list(text_columns)
            if all_text:  # the header first: every column it names is read as text
                columns = pacsv.open_csv(f, read_options=pacsv.ReadOptions(block_size=self.block_bytes),
                                         parse_options=pacsv.ParseOptions(delimiter=self.delimiter)).schema.names
            types = {c: pa.string() for c in columns}
            return pacsv.open_csv(
                f,
                read_options=pacsv.ReadOptions(block_size=self.block_bytes),
                parse_options=pacsv.ParseOptions(delimiter=self.delimiter),
                # text columns keep every text (review R13-LOAD-1: Arrow's null texts "NA", "null", ... would
                # make a declared category "NA" missing); only declared markers and blank cells are missing there
                convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
            )
        except pa.ArrowInvalid as exc:
            if not all_text and "conversion error" in str(exc):
                raise Retype(str(exc)) from exc
            raise DataValidationError(f"cannot read the csv file: {exc}", party=party, path=str(f)) from exc
        except OSError as exc:
            raise DataValidationError(f"cannot read the csv file: {exc}", party=party, path=str(f)) from exc


def _arrow_nulls(batch: pa.RecordBatch, text: set[str]) -> pa.RecordBatch:
    """A column read as text that is not declared text (a numeric column holding markers): Arrow's null texts
    ("NA", "null", ...) stay missing there, as in a numeric column Arrow parsed itself."""
    nulls = pa.array(sorted(ARROW_NULLS), type=pa.string())
    columns = []
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        if name not in text and pa.types.is_string(col.type):
            col = pc.if_else(pc.is_in(col, value_set=nulls), pa.scalar(None, pa.string()), col)
        columns.append(col)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def open_source(path: str | Path, party: str, format: TableFormat | None = None, *, batch_rows: int,
                delimiter: str = ",", block_bytes: int = CSV_BLOCK_BYTES) -> TableSource:
    """The source for a file, a folder of files or a glob pattern (format from the suffix if not given)."""
    files, fmt = _files(Path(path), party, format)
    if fmt == "parquet":
        return ParquetSource(files, str(path), batch_rows)
    return CsvSource(files, str(path), delimiter, block_bytes)
