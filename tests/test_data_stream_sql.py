"""A party's table from SQL (PostgreSQL on 127.0.0.1 and SQLite), streamed in chunks, checked like a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from test_data_stream import SCHEMA, good, same, write

from sampan.data import DataValidationError, load_table
from sampan.data.sql_source import SqlSource, redacted_url
from sampan.data.stream import load_source

QUERY = "SELECT id, \"default\", revenue, employees, guaranteed, sector FROM bank ORDER BY id"


def fill(url: str, cols: dict[str, list[Any]], revenue_type: str = "DOUBLE PRECISION") -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE TABLE bank (id TEXT, "default" INTEGER, revenue {revenue_type}, '
                             "employees INTEGER, guaranteed BOOLEAN, sector TEXT)")
        rows = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
        conn.execute(sa.text('INSERT INTO bank (id, "default", revenue, employees, guaranteed, sector) VALUES '
                             "(:id, :default, :revenue, :employees, :guaranteed, :sector)"), rows)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bank.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
def test_sql_source_gives_the_file_table(tmp_path: Path, db_url: str, chunk_rows: int) -> None:
    cols = good(40)
    fill(db_url, cols)
    want = load_table(write(tmp_path / "b.parquet", cols), SCHEMA, "bank_b")
    got = load_source(SqlSource(db_url, QUERY, chunk_rows=chunk_rows), SCHEMA, "bank_b", batch_rows=5)
    same(got, want)


def test_numeric_columns_and_float32(tmp_path: Path, postgres_url: str) -> None:
    """PostgreSQL NUMERIC comes back as Decimal: read as float."""
    cols = good(20)
    fill(postgres_url, cols, revenue_type="NUMERIC(12, 2)")
    got = load_source(SqlSource(postgres_url, QUERY), SCHEMA, "bank_b", dtype=np.float32)
    want = load_table(write(tmp_path / "b.parquet", cols), SCHEMA, "bank_b", dtype=np.float32)
    same(got, want)


def test_duplicate_id_in_two_chunks_is_named(db_url: str) -> None:
    cols = good(30)
    cols["id"][25] = cols["id"][4]
    fill(db_url, cols)
    with pytest.raises(DataValidationError) as info:
        load_source(SqlSource(db_url, "SELECT * FROM bank", name="sql:loans", chunk_rows=8), SCHEMA, "bank_b")
    err = info.value
    assert (err.party, err.path, err.column, err.rows) == ("bank_b", "sql:loans", "id", 1)
    assert "column 'id' (id) has 1 duplicate id (row 26; e.g. '000004')" in str(err)


def test_mixed_sqlite_column_is_checked_as_text(tmp_path: Path) -> None:
    """SQLite lets one column hold numbers and text: the text is named, not a traceback."""
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    cols = good(10)
    cols["revenue"][6] = "oops"
    fill(url, cols, revenue_type="")
    with pytest.raises(DataValidationError, match=r"declared float but has 1 non-numeric value \(row 7; e.g. 'oops'\)"):
        load_source(SqlSource(url, QUERY), SCHEMA, "bank_b")


def test_bad_query_and_unreachable_server_are_clear_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    with pytest.raises(DataValidationError, match="cannot run the SQL query: OperationalError: no such table"):
        load_source(SqlSource(url, "SELECT * FROM no_such_table"), SCHEMA, "bank_b")
    secret = "postgresql+psycopg://bank:s3cret@127.0.0.1:1/db"
    with pytest.raises(DataValidationError) as info:
        load_source(SqlSource(secret, "SELECT 1"), SCHEMA, "bank_b")
    assert "s3cret" not in str(info.value) and "cannot run the SQL query" in str(info.value)
    assert "***" in redacted_url(secret) and "s3cret" not in redacted_url(secret)
