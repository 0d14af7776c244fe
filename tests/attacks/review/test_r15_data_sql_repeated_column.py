"""R15-DATA-8: a SQL query returning a column name twice ends in a bare `KeyError`, not a clear error.

Validation: a file whose header repeats a column gets `DataValidationError` "column 'x' appears more than once
in the header" (party, file, column). A bank's `[data.<name>] sql` easily returns a name twice (`SELECT id, x,
t.x FROM ... JOIN ...`, `SELECT *` over a join). Safe behaviour: the same clear error, naming the party, the
source and the column. What happens: `SqlSource.parts` never runs the repeated-name check the file sources
run (`sources._repeated`), the layout check passes (every declared name is there), and
`stream._Checks.batch` calls `rb.column("x")`, which raises `KeyError: 'Field "x" exists 2 times in schema'`
out of `load_source` (and through the party agent as a bare error with no party or source).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from sampan.data import DataValidationError, TableSchema
from sampan.data.sql_source import SqlSource
from sampan.data.stream import load_source


@pytest.mark.xfail(strict=True, reason="R15-DATA-8: a repeated column name in a SQL result raises a bare KeyError")
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
