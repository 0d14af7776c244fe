"""R15-DATA-9 (fixed): a SQL id's text depends on which rows share its chunk: a repeated id passes validation.

Validation: ids are the alignment key, so the loader refuses repeated ids and gives each id one canonical
text (3.0 -> "3", as every file path does). SQLite (and any untyped source) may hold an id column with REAL
and TEXT values. Safe behaviour: the id 7.0 is "7" wherever it sits, and a 7.0 that appears twice is refused
as a duplicate, whatever `chunk_rows` is. It happened: `sql_source._column` turned a chunk whose values mix
Python types into `str(v)` text ("7.0"), while a chunk of floats only was canonicalised ("7"), so the repeated
7.0 passed. Now a mixed chunk gets the same canonical text per value (`_as_text`: 7.0 -> "7").
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from sampan.data import DataValidationError, TableSchema
from sampan.data.sql_source import SqlSource
from sampan.data.stream import load_source


def test_repeated_real_id_over_chunks_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE bank (id, x REAL)")  # no type affinity: values keep their types
        conn.exec_driver_sql("INSERT INTO bank VALUES (7.0, 1), (8.0, 2), (7.0, 3), ('c9', 4)")
    engine.dispose()
    source = SqlSource(url, "SELECT id, x FROM bank ORDER BY rowid", chunk_rows=2)
    with pytest.raises(DataValidationError) as info:
        load_source(source, TableSchema(id="id", features=[{"name": "x"}]), "bank")
    assert info.value.column == "id" and "duplicate" in str(info.value)


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 100])
def test_sql_id_text_does_not_depend_on_the_chunk(tmp_path: Path, chunk_rows: int) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE bank (id, x REAL)")
        conn.exec_driver_sql("INSERT INTO bank VALUES (7.0, 1), (8.5, 2), ('c9', 3), (10, 4)")
    engine.dispose()
    source = SqlSource(url, "SELECT id, x FROM bank ORDER BY rowid", chunk_rows=chunk_rows)
    data = load_source(source, TableSchema(id="id", features=[{"name": "x"}]), "bank")
    assert data.ids.tolist() == ["7", "8.5", "c9", "10"]
