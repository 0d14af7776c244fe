"""R15-DATA-9: a SQL id's text depends on which rows share its chunk: a repeated id passes validation.

Validation: ids are the alignment key, so the loader refuses repeated ids and gives each id one canonical
text (3.0 -> "3", as every file path does). SQLite (and any untyped source) may hold an id column with REAL
and TEXT values. Safe behaviour: the id 7.0 is "7" wherever it sits, and a 7.0 that appears twice is refused
as a duplicate, whatever `chunk_rows` is. What happens: `sql_source._column` turns a chunk whose values mix
Python types into `str(v)` text ("7.0"), while a chunk of floats only is canonicalised ("7"). With the rows
split over chunks, the first 7.0 becomes "7", the second "7.0": the duplicate passes, the table holds two
customers for one id, and PSI matches the partner's "7" to one of them and drops the other silently.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from sampan.data import DataValidationError, TableSchema
from sampan.data.sql_source import SqlSource
from sampan.data.stream import load_source


@pytest.mark.xfail(strict=True, reason="R15-DATA-9: SQL ids become '7' or '7.0' by chunk; a repeated id passes")
def test_repeated_real_id_over_chunks_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE bank (id, x REAL)")  # no type affinity: values keep their types
        conn.exec_driver_sql("INSERT INTO bank VALUES (7.0, 1), (8.0, 2), (7.0, 3), ('c9', 4)")
    engine.dispose()
    source = SqlSource(url, "SELECT id, x FROM bank ORDER BY rowid", chunk_rows=2)
    try:
        data = load_source(source, TableSchema(id="id", features=[{"name": "x"}]), "bank")
    except DataValidationError as exc:
        assert exc.column == "id" and "duplicate" in str(exc)
        return
    pytest.fail(f"repeated id 7.0 accepted as {data.ids.tolist()}")
