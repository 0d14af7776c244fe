"""Schema declaration, PartyData, and the validation every party's table goes through."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from sampan.data import (
    ColumnSpec,
    DataValidationError,
    PartyData,
    TableSchema,
    from_columns,
    load_table,
)

SCHEMA = TableSchema(
    id_column="id",
    label_column="default",
    features=(
        ColumnSpec("revenue"),
        ColumnSpec("employees", "int"),
        ColumnSpec("guaranteed", "bool"),
        ColumnSpec("sector", "category", ("retail", "trading", "logistics")),
    ),
)


def good_columns(n: int = 20) -> dict[str, list[object]]:
    sectors = ["retail", "trading", "logistics"]
    return {
        "id": [f"BR{i:08d}" for i in range(n)],
        "default": [i % 2 for i in range(n)],
        "revenue": [1000.0 + 10.5 * i for i in range(n)],
        "employees": [i + 1 for i in range(n)],
        "guaranteed": [i % 3 == 0 for i in range(n)],
        "sector": [sectors[i % 3] for i in range(n)],
    }


def error_of(columns: dict[str, list[object]], path: str | None = "b.csv") -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        from_columns(columns, SCHEMA, "bank_b", path=path)
    return info.value


# --- schema ----------------------------------------------------------------------------------------


def test_feature_names_one_hot_in_declared_order() -> None:
    assert SCHEMA.feature_names() == [
        "revenue",
        "employees",
        "guaranteed",
        "sector=retail",
        "sector=trading",
        "sector=logistics",
    ]
    assert SCHEMA.columns() == ["id", "default", "revenue", "employees", "guaranteed", "sector"]


@pytest.mark.parametrize(
    "make",
    [
        lambda: ColumnSpec("sector", "category"),
        lambda: ColumnSpec("x", "float", ("a",)),
        lambda: ColumnSpec("x", "text"),  # type: ignore[arg-type]
        lambda: ColumnSpec("s", "category", ("a", "a")),
        lambda: TableSchema("id", "y", (ColumnSpec("a"), ColumnSpec("a"))),
        lambda: TableSchema("id", "y", (ColumnSpec("id"),)),
        lambda: TableSchema("id", "id", ()),
    ],
)
def test_bad_schema_declarations_are_rejected(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_category_list_is_frozen_to_tuple() -> None:
    spec = ColumnSpec("s", "category", ["a", "b"])  # type: ignore[arg-type]
    assert spec.categories == ("a", "b")


# --- the happy path --------------------------------------------------------------------------------


def test_from_columns_builds_float_matrix_and_int8_label() -> None:
    data = from_columns(good_columns(), SCHEMA, "bank_b")
    assert len(data) == 20
    assert data.X.dtype == np.float64 and data.X.flags.c_contiguous
    assert data.X.shape == (20, 6)
    assert data.y is not None and data.y.dtype == np.int8
    assert data.ids.dtype == object and data.ids[3] == "BR00000003"
    assert data.feature_names == SCHEMA.feature_names()
    # one-hot: exactly one sector column set per row, in declared order
    np.testing.assert_array_equal(data.X[:, 3:].sum(axis=1), 1.0)
    np.testing.assert_array_equal(data.X[:3, 3:], np.eye(3))
    assert data.X[0, 2] == 1.0 and data.X[1, 2] == 0.0


def test_label_accepts_booleans_and_zero_one_strings() -> None:
    cols = good_columns(4)
    for label in ([True, False, True, False], ["1", "0", "1", "0"], [1.0, 0.0, 1.0, 0.0]):
        cols["default"] = label  # type: ignore[assignment]
        data = from_columns(cols, SCHEMA, "p")
        assert data.y is not None
        assert data.y.tolist() == [1, 0, 1, 0]


def test_single_class_label_is_fine_at_load() -> None:
    cols = good_columns(5)
    cols["default"] = [0] * 5
    data = from_columns(cols, SCHEMA, "p")
    assert data.y is not None and data.y.sum() == 0


def test_feature_only_party_has_no_label() -> None:
    schema = TableSchema("id", None, (ColumnSpec("volume"),))
    data = from_columns({"id": [3, 1, 2], "volume": [1.0, 2.0, 3.0]}, schema, "payments")
    assert data.y is None
    assert data.ids.tolist() == ["3", "1", "2"]


# --- each bad-data case ----------------------------------------------------------------------------


def test_missing_values_counted_with_row_numbers() -> None:
    cols = good_columns()
    for row in (4, 9, 17):  # 1-based data rows
        cols["revenue"][row - 1] = None if row != 9 else float("nan")
    err = error_of(cols)
    msg = str(err)
    assert msg.startswith("party 'bank_b', file 'b.csv': column 'revenue' has 3 missing/NaN values (rows 4, 9, 17); "
                          'to accept them, declare in its [schema] feature missing = ["?", ""] and impute = ')
    assert (err.party, err.column, err.rows, err.path) == ("bank_b", "revenue", 3, "b.csv")


def test_empty_strings_are_missing_in_label_and_category() -> None:
    cols = good_columns()
    cols["default"][1] = ""
    cols["sector"][5] = "  "
    cols["sector"][6] = None
    msg = str(error_of(cols))
    assert "column 'default' (label) has 1 missing/NaN value (row 2)" in msg
    assert "column 'sector' has 2 missing/NaN values (rows 6, 7)" in msg


def test_more_than_five_rows_are_elided() -> None:
    cols = good_columns()
    for i in range(8):
        cols["employees"][i] = None
    err = error_of(cols)
    assert err.rows == 8
    assert "8 missing/NaN values (rows 1, 2, 3, 4, 5, ...)" in str(err)


def test_missing_and_extra_columns_are_listed() -> None:
    cols = good_columns()
    del cols["revenue"]
    cols["notes"] = ["x"] * 20
    cols["branch"] = ["y"] * 20
    err = error_of(cols)
    msg = str(err)
    assert "party 'bank_b'" in msg and "file 'b.csv'" in msg
    assert "missing declared column(s) 'revenue'" in msg
    assert "undeclared column(s) 'notes', 'branch'" in msg
    assert "declare them in the schema or drop them" in msg
    assert err.column == "revenue"


def test_non_numeric_strings_in_float_column() -> None:
    cols = good_columns()
    cols["revenue"][2] = "abc"
    cols["revenue"][7] = "1,200"
    err = error_of(cols)
    assert err.column == "revenue" and err.rows == 2
    assert "declared float but has 2 non-numeric values (rows 3, 8; e.g. 'abc', '1,200')" in str(err)


def test_infinite_value_is_rejected() -> None:
    cols = good_columns()
    cols["revenue"][0] = float("inf")
    err = error_of(cols)
    assert err.column == "revenue" and err.rows == 1


def test_non_integer_in_int_column() -> None:
    cols = good_columns()
    cols["employees"][3] = 2.5
    cols["employees"][4] = "7.25"
    err = error_of(cols)
    assert err.column == "employees" and err.rows == 2
    assert "declared int but has 2 non-integer values (rows 4, 5" in str(err)


def test_numeric_strings_are_accepted_in_numeric_columns() -> None:
    cols = good_columns(3)
    cols["employees"] = ["1", " 2 ", "3.0"]
    cols["revenue"] = ["1e3", "2.5", "-7"]
    data = from_columns(cols, SCHEMA, "p")
    np.testing.assert_array_equal(data.X[:, 0], [1000.0, 2.5, -7.0])
    np.testing.assert_array_equal(data.X[:, 1], [1.0, 2.0, 3.0])


def test_unknown_category_values_are_counted() -> None:
    cols = good_columns()
    cols["sector"][0] = "mining"
    cols["sector"][10] = "mining"
    cols["sector"][11] = "Retail"
    err = error_of(cols)
    msg = str(err)
    assert err.column == "sector" and err.rows == 3
    assert "3 values not in its declared categories (rows 1, 11, 12)" in msg
    assert "'mining' (2)" in msg and "'Retail' (1)" in msg


def test_bad_bool_values() -> None:
    cols = good_columns()
    cols["guaranteed"][2] = "maybe"
    err = error_of(cols)
    assert err.column == "guaranteed" and err.rows == 1


def test_label_not_binary_reports_distinct_values() -> None:
    cols = good_columns()
    cols["default"][0] = 2
    cols["default"][4] = 2
    cols["default"][5] = "yes"
    err = error_of(cols)
    msg = str(err)
    assert err.column == "default" and err.rows == 3
    assert "(label) must be binary 0/1 but has 3 other values (rows 1, 5, 6)" in msg
    assert "2" in msg and "'yes'" in msg


def test_duplicate_ids() -> None:
    cols = good_columns()
    cols["id"][5] = cols["id"][0]
    cols["id"][6] = cols["id"][0]
    cols["id"][9] = cols["id"][8]
    err = error_of(cols)
    assert err.column == "id" and err.rows == 3
    assert "3 duplicate ids (rows 6, 7, 10" in str(err)


def test_missing_id() -> None:
    cols = good_columns()
    cols["id"][3] = None
    err = error_of(cols)
    assert err.column == "id" and err.rows == 1
    assert "column 'id' (id) has 1 missing/NaN value (row 4)" in str(err)


def test_empty_table() -> None:
    cols = {k: [] for k in good_columns()}
    err = error_of(cols, path=None)  # type: ignore[arg-type]
    assert str(err) == "party 'bank_b' has no rows"
    assert err.rows == 0


def test_unequal_column_lengths() -> None:
    cols = good_columns()
    cols["revenue"] = cols["revenue"][:-1]
    err = error_of(cols)
    assert "different lengths" in str(err)


def test_all_problems_reported_together() -> None:
    cols = good_columns()
    cols["revenue"][0] = None
    cols["sector"][1] = "mining"
    err = error_of(cols)
    msg = str(err)
    assert msg.startswith("party 'bank_b', file 'b.csv': 2 problems:")
    assert "column 'revenue'" in msg and "column 'sector'" in msg
    assert err.column == "revenue" and err.rows == 1


# --- files -----------------------------------------------------------------------------------------


def write_csv(path: Path, columns: dict[str, list[object]]) -> None:
    pacsv.write_csv(pa.table(columns), path)


def test_csv_round_trip(tmp_path: Path) -> None:
    cols = good_columns()
    cols["id"][0] = "007"  # leading zeros kept: ids are read as text
    path = tmp_path / "bank.csv"
    write_csv(path, cols)
    data = load_table(path, SCHEMA, "bank_b")
    expected = from_columns(cols, SCHEMA, "bank_b")
    np.testing.assert_array_equal(data.X, expected.X)
    np.testing.assert_array_equal(data.y, expected.y)  # type: ignore[arg-type]
    assert data.ids.tolist() == expected.ids.tolist()
    assert data.ids[0] == "007"


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_round_trip(tmp_path: Path, suffix: str) -> None:
    cols = good_columns()
    table = pa.table(cols)
    # a pandas-style dictionary-encoded category column must read back the same
    table = table.set_column(5, "sector", pa.array(cols["sector"]).dictionary_encode())
    path = tmp_path / f"bank{suffix}"
    pq.write_table(table, path)
    data = load_table(path, SCHEMA, "bank_b")
    expected = from_columns(cols, SCHEMA, "bank_b")
    np.testing.assert_array_equal(data.X, expected.X)
    np.testing.assert_array_equal(data.y, expected.y)  # type: ignore[arg-type]


def test_csv_empty_cells_and_text_are_reported_with_file(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text(
        "id,default,revenue,employees,guaranteed,sector\n"
        "a,0,1.5,1,true,retail\n"
        "b,1,,2,false,trading\n"
        "c,0,NA,3,true,retail\n"
        "d,1,oops,4,false,logistics\n"
    )
    with pytest.raises(DataValidationError) as info:
        load_table(path, SCHEMA, "bank_b")
    msg = str(info.value)
    assert f"party 'bank_b', file '{path}'" in msg
    assert "column 'revenue' has 2 missing/NaN values (rows 2, 3)" in msg
    assert "1 non-numeric value (row 4; e.g. 'oops')" in msg


def test_parquet_null_label_is_reported(tmp_path: Path) -> None:
    cols = good_columns()
    cols["default"][2] = None
    path = tmp_path / "b.parquet"
    pq.write_table(pa.table(cols), path)
    with pytest.raises(DataValidationError) as info:
        load_table(path, SCHEMA, "bank_b")
    assert info.value.column == "default" and info.value.rows == 1
    assert "(row 3)" in str(info.value)


def test_header_only_csv_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("id,default,revenue,employees,guaranteed,sector\n")
    with pytest.raises(DataValidationError, match="party 'bank_b' has no rows"):
        load_table(path, SCHEMA, "bank_b")


def test_missing_file_names_party_and_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(DataValidationError) as info:
        load_table(path, SCHEMA, "bank_b")
    assert "party 'bank_b'" in str(info.value) and str(path) in str(info.value)
    assert not isinstance(info.value, FileNotFoundError)


def test_unknown_suffix_asks_for_format(tmp_path: Path) -> None:
    path = tmp_path / "bank.txt"
    write_csv(path, good_columns())
    with pytest.raises(DataValidationError, match="format='csv'"):
        load_table(path, SCHEMA, "bank_b")
    assert len(load_table(path, SCHEMA, "bank_b", format="csv")) == 20


def test_malformed_csv_is_a_validation_error(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("id,default,revenue,employees,guaranteed,sector\na,0,1.5\n")
    with pytest.raises(DataValidationError, match="cannot read the csv file"):
        load_table(path, SCHEMA, "bank_b")


# --- PartyData -------------------------------------------------------------------------------------


def party(n: int = 200, positives: int = 20) -> PartyData:
    y = np.zeros(n, dtype=np.int8)
    y[:positives] = 1
    return PartyData(
        party="p",
        ids=np.array([f"id{i}" for i in range(n)], dtype=object),
        X=np.arange(2 * n, dtype=np.float64).reshape(n, 2),
        y=y,
        feature_names=["a", "b"],
    )


def test_subset_by_index_and_mask() -> None:
    d = party(10, 3)
    s = d.subset(np.array([7, 2]))
    assert s.ids.tolist() == ["id7", "id2"] and s.X[0, 0] == 14.0
    m = d.subset(d.y == 1)  # type: ignore[arg-type]
    assert len(m) == 3 and m.y is not None and m.y.all()
    with pytest.raises(ValueError):
        d.subset(np.array([True, False]))


def test_stratified_split_keeps_label_rate_and_is_disjoint() -> None:
    d = party(200, 20)
    train, test = d.train_test_split(0.25, np.random.default_rng(0))
    assert len(train) + len(test) == 200 and len(test) == 50
    assert not set(train.ids.tolist()) & set(test.ids.tolist())
    assert test.y is not None and int(test.y.sum()) == 5
    # reproducible with the same seed
    again = d.train_test_split(0.25, np.random.default_rng(0))[1]
    assert again.ids.tolist() == test.ids.tolist()


def test_split_without_label_and_bad_fraction() -> None:
    d = PartyData("f", np.array(["a", "b", "c"], dtype=object), np.zeros((3, 1)), None, ["x"])
    train, test = d.train_test_split(0.5, np.random.default_rng(1))
    assert len(train) + len(test) == 3 and len(train) > 0 and len(test) > 0
    with pytest.raises(ValueError):
        d.train_test_split(1.0, np.random.default_rng(1))


def test_partydata_rejects_inconsistent_shapes() -> None:
    with pytest.raises(ValueError):
        PartyData("p", np.array(["a"], dtype=object), np.zeros((2, 1)), None, ["x"])
    with pytest.raises(ValueError):
        PartyData("p", np.array(["a"], dtype=object), np.zeros((1, 2)), None, ["x"])
