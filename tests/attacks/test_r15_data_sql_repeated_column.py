"""R15-DATA-8 (fixed): a SQL query returning a column name twice ends in a bare `KeyError`, not a clear error.

Validation: a file whose header repeats a column gets `DataValidationError` "column 'x' appears more than once
in the header" (party, file, column). A bank's `[data.<name>] sql` easily returns a name twice (`SELECT id, x,
t.x FROM ... JOIN ...`, `SELECT *` over a join). Safe behaviour: the same clear error, naming the party, the
source and the column. It happened: `SqlSource.parts` never ran the repeated-name check the file sources
run (`sources._repeated`), and `stream._Checks.batch` raised `KeyError: 'Field "x" exists 2 times in schema'`
out of `load_source`. Now the SQL source runs the same check on the result's column names.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from sampan.data import DataValidationError, TableSchema
from sampan.data.sql_source import SqlSource
from sampan.data.stream import load_source


def test_repeated_sql_column_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE a (id TEXT, x REAL)")
        conn.exec_driver_sql("CREATE TABLE b (id TEXT, x REAL)")
        conn.exec_driver_sql("INSERT INTO a VALUES ('c1', 1), ('c2', 2)")
        conn.exec_driver_sql("INSERT INTO b VALUES ('c1', 10), ('c2', 20)")
    engine.dispose()
    source = SqlSource(url, "SELECT a.id, a.x, b.x FROM a JOIN b ON a.id = b.id", name="[data.loans] sql")
    with pytest.raises(DataValidationError) as info:
        load_source(source, TableSchema(id="id", features=[{"name": "x"}]), "bank")
    assert info.value.column == "x" and "more than once" in str(info.value)
    assert info.value.party == "bank" and info.value.path == "[data.loans] sql"
