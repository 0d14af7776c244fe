"""Streaming party data (issue 15 item 1): batch-by-batch validation gives the whole-table answer.

The reference is the whole-table path (`read_columns` + `from_columns`, the loader before streaming): the
same arrays for good tables and the same error message and fields for bad ones, whatever the batch size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from sampan.data import DataValidationError, PartyData, TableSchema, from_columns, load_table
from sampan.data.loaders import read_columns
from sampan.data.sources import open_source
from sampan.data.stream import load_source, text_columns

SCHEMA = TableSchema(id="id", label="default", features=[
    {"name": "revenue"},
    {"name": "employees", "kind": "int"},
    {"name": "guaranteed", "kind": "bool"},
    {"name": "sector", "kind": "category", "categories": ["retail", "trading", "logistics"]},
])
SECTORS = ["retail", "trading", "logistics"]


def good(n: int = 40) -> dict[str, list[Any]]:
    return {
        "id": [f"{i:06d}" for i in range(n)],
        "default": [i % 2 for i in range(n)],
        "revenue": [1000.0 + 10.25 * i for i in range(n)],
        "employees": [i + 1 for i in range(n)],
        "guaranteed": [i % 3 == 0 for i in range(n)],
        "sector": [SECTORS[i % 3] for i in range(n)],
    }


def old_path(path: Path, schema: TableSchema, party: str = "bank_b") -> PartyData:
    """The loader before streaming: the whole file read, then the whole-table checks."""
    columns = read_columns(path, party, string_columns=text_columns(schema))
    return from_columns(columns, schema, party, path=str(path))


def same(a: PartyData, b: PartyData) -> None:
    assert a.X.dtype == b.X.dtype and a.X.tobytes() == b.X.tobytes()
    assert (a.y is None and b.y is None) or (a.y is not None and b.y is not None and a.y.tobytes() == b.y.tobytes())
    assert a.ids.dtype == object and a.ids.tolist() == b.ids.tolist()
    assert all(type(v) is str for v in a.ids)
    assert a.feature_names == b.feature_names and a.missing_columns == b.missing_columns


def write(path: Path, cols: dict[str, list[Any]]) -> Path:
    table = pa.table(cols)
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path, row_group_size=7)
    return path


def error(fn: Any) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        fn()
    return info.value


# --- good tables: same bytes whatever the batch size ------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("batch_rows", [1, 3, 1 << 16])
def test_batches_give_the_whole_table(tmp_path: Path, suffix: str, batch_rows: int) -> None:
    path = write(tmp_path / f"b{suffix}", good())
    same(load_table(path, SCHEMA, "bank_b", batch_rows=batch_rows), old_path(path, SCHEMA))


def test_small_csv_blocks_give_the_whole_table(tmp_path: Path) -> None:
    """Many CSV blocks (Arrow's own batches, not re-sliced ones): same bytes."""
    path = write(tmp_path / "b.csv", good(3000))
    source = open_source(path, "bank_b", batch_rows=500, block_bytes=4096)
    same(load_source(source, SCHEMA, "bank_b", batch_rows=500), old_path(path, SCHEMA))


def test_type_change_after_the_first_csv_block_reads_as_text(tmp_path: Path) -> None:
    """ints for the first block, then "1.5" and "true": Arrow's streaming reader stops; the loader reads the
    file again as text and gets what the whole-file reader got."""
    cols = good(3000)
    cols["revenue"] = [str(i) for i in range(2999)] + ["1.5"]
    cols["guaranteed"] = ["1" if i % 2 else "0" for i in range(2999)] + ["true"]
    path = write(tmp_path / "b.csv", cols)
    source = open_source(path, "bank_b", batch_rows=1 << 16, block_bytes=4096)
    data = load_source(source, SCHEMA, "bank_b")
    same(data, old_path(path, SCHEMA))
    assert data.X[-1, 0] == 1.5 and data.X[-1, 2] == 1.0


def test_missing_policies_and_markers_match(tmp_path: Path) -> None:
    schema = TableSchema(id="id", label="default", features=[
        {"name": "revenue", "impute": "indicator", "missing": ["?", "-999"]},
        {"name": "employees", "kind": "int", "impute": "median"},
        {"name": "guaranteed", "kind": "bool", "impute": "mean", "missing": ["unknown"]},
        {"name": "sector", "kind": "category", "categories": SECTORS + ["NA"], "impute": "category",
         "missing": ["?"]},
    ])
    cols = good(30)
    cols["revenue"][3], cols["revenue"][5] = "?", "-999"
    cols["revenue"] = [str(v) for v in cols["revenue"]]
    cols["employees"][4] = None
    cols["guaranteed"] = ["unknown" if i == 7 else ("yes" if i % 2 else "no") for i in range(30)]
    cols["sector"][2], cols["sector"][9], cols["sector"][11] = "?", "NA", " "
    for suffix in (".csv", ".parquet"):
        path = write(tmp_path / f"m{suffix}", cols)
        for rows in (1, 4, 1000):
            same(load_table(path, schema, "bank_b", batch_rows=rows), old_path(path, schema))


def test_parquet_types_match(tmp_path: Path) -> None:
    """Numeric ids and categories, dictionary columns, a float label, nulls in an int column."""
    schema = TableSchema(id="id", label="y", features=[
        {"name": "n", "kind": "int", "impute": "mean"},
        {"name": "code", "kind": "category", "categories": ["1", "2", "3"]},
        {"name": "flag", "kind": "bool"},
    ])
    table = pa.table({
        "id": pa.array(list(range(100, 120)), type=pa.int64()),
        "y": pa.array([float(i % 2) for i in range(20)]),
        "n": pa.array([None if i == 3 else i for i in range(20)], type=pa.int32()),
        "code": pa.array([float(1 + i % 3) for i in range(20)]),
        "flag": pa.array([("true", "false")[i % 2] for i in range(20)]).dictionary_encode(),
    })
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=6)
    same(load_table(path, schema, "bank_b", batch_rows=5), old_path(path, schema))


def test_folder_and_glob_of_files(tmp_path: Path) -> None:
    cols = good(30)
    whole = write(tmp_path / "whole.csv", cols)
    for suffix in (".csv", ".parquet"):
        folder = tmp_path / f"parts{suffix}"
        folder.mkdir()
        for k, (a, b) in enumerate([(0, 10), (10, 25), (25, 30)]):
            write(folder / f"part-{k}{suffix}", {c: v[a:b] for c, v in cols.items()})
        same(load_table(folder, SCHEMA, "bank_b", batch_rows=4), old_path(whole, SCHEMA))
        same(load_table(folder / f"part-*{suffix}", SCHEMA, "bank_b"), old_path(whole, SCHEMA))


# --- bad tables: the same message and fields --------------------------------------------------------


def _bad_tables() -> list[tuple[str, dict[str, list[Any]]]]:
    out = []
    c = good(40)
    c["id"][31] = c["id"][2]  # a repeat in a later batch
    c["id"][35] = c["id"][2]
    c["id"][39] = c["id"][7]
    out.append(("duplicate ids across batches", c))
    c = good(40)
    c["id"][5], c["id"][30] = None, " "
    c["id"][33] = c["id"][0]
    out.append(("missing and repeated ids", c))
    c = good(40)
    c["revenue"] = [str(v) for v in c["revenue"]]
    c["revenue"][4], c["revenue"][20], c["revenue"][21], c["revenue"][39] = "oops", "", "inf", "n/a?"
    c["employees"] = [str(v) for v in c["employees"]]
    c["employees"][6], c["employees"][36] = "2.5", "x"
    out.append(("numeric text, blanks, infinities, fractions", c))
    c = good(40)
    c["default"] = [str(v) for v in c["default"]]
    c["default"][1], c["default"][17], c["default"][38] = "2", "", "yes"
    c["guaranteed"] = ["maybe" if i in (3, 30) else "true" for i in range(40)]
    out.append(("labels and bools", c))
    c = good(40)
    for i in (1, 8, 9, 25, 26, 27, 33, 34):
        c["sector"][i] = ["mining", "farming", "Retail"][i % 3]
    c["sector"][12] = ""
    out.append(("unknown and missing categories", c))
    return out


@pytest.mark.parametrize("case", _bad_tables(), ids=lambda case: case[0])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_errors_across_batches_match_the_whole_table(tmp_path: Path, case: tuple[str, dict[str, list[Any]]],
                                                     suffix: str) -> None:
    path = write(tmp_path / f"b{suffix}", case[1])
    want = error(lambda: old_path(path, SCHEMA))
    for rows in (1, 6, 1000):
        got = error(lambda rows=rows: load_table(path, SCHEMA, "bank_b", batch_rows=rows))
        assert str(got) == str(want)
        assert (got.party, got.path, got.column, got.rows) == (want.party, want.path, want.column, want.rows)


def test_duplicate_id_in_two_batches_names_column_and_rows(tmp_path: Path) -> None:
    cols = good(40)
    cols["id"][37] = cols["id"][3]
    path = write(tmp_path / "b.parquet", cols)
    err = error(lambda: load_table(path, SCHEMA, "bank_b", batch_rows=8))
    assert err.column == "id" and err.rows == 1 and err.path == str(path)
    assert "column 'id' (id) has 1 duplicate id (row 38; e.g. '000003')" in str(err)


def test_layout_and_read_errors(tmp_path: Path) -> None:
    cols = good(5)
    cols["extra"] = [1] * 5
    path = write(tmp_path / "b.csv", cols)
    assert "undeclared column(s) 'extra'" in str(error(lambda: load_table(path, SCHEMA, "bank_b")))
    (tmp_path / "e.csv").write_text("id,default,revenue,employees,guaranteed,sector\n")
    assert "has no rows" in str(error(lambda: load_table(tmp_path / "e.csv", SCHEMA, "bank_b")))
    empty = tmp_path / "none"
    empty.mkdir()
    assert "holds no .csv" in str(error(lambda: load_table(empty, SCHEMA, "bank_b")))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    assert "cannot read the parquet file" in str(error(lambda: load_table(tmp_path / "bad.parquet", SCHEMA, "b")))


# --- compact form --------------------------------------------------------------------------------


def test_float32_compact_option(tmp_path: Path) -> None:
    path = write(tmp_path / "b.parquet", good(50))
    wide = load_table(path, SCHEMA, "bank_b")
    small = load_table(path, SCHEMA, "bank_b", dtype=np.float32, batch_rows=7)
    assert small.X.dtype == np.float32 and small.X.nbytes * 2 == wide.X.nbytes
    np.testing.assert_array_equal(small.X, wide.X.astype(np.float32))
    blocks = list(small.batches(16))
    assert [(a, b) for a, b, _ in blocks] == [(0, 16), (16, 32), (32, 48), (48, 50)]
    assert all(x.dtype == np.float64 for _, _, x in blocks)
    np.testing.assert_array_equal(np.concatenate([x for _, _, x in blocks]), small.X.astype(np.float64))
    assert small.subset(np.arange(3)).X.dtype == np.float32
    with pytest.raises(ValueError, match="float64 or float32"):
        load_table(path, SCHEMA, "bank_b", dtype=np.int32)


def test_csv_longer_than_its_estimate_grows_in_place(tmp_path: Path) -> None:
    """Wide first rows make the row estimate low: the arrays grow (realloc) and are trimmed, same bytes."""
    cols = good(4000)
    cols["id"] = [f"{i:06d}" + ("x" * 200 if i < 40 else "") for i in range(4000)]
    path = write(tmp_path / "b.csv", cols)
    source = open_source(path, "bank_b", batch_rows=64, block_bytes=8192)
    assert source.row_hint(40) is not None and source.row_hint(40) < 4000  # type: ignore[operator]
    same(load_source(source, SCHEMA, "bank_b", batch_rows=64), old_path(path, SCHEMA))
