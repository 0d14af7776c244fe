"""R15-DATA-4 (fixed): an integer column beyond 2**53 (an epoch in nanoseconds, a BIGINT key) ends the load in a raw
`ArrowInvalid`, not a `DataValidationError` naming party, file and column.

Validation: bad or unusual input must get a clear error naming the party/file/column, never a traceback. A
bank's CSV (or Parquet, or SQL BIGINT) has a feature column of int64 values such as 1672531200000000001
(nanosecond timestamps) or a label column with such a value. Before issue 15 the whole-table path read them
(float64, rounded) or refused the label with a `DataValidationError`. It happened: `_arrow_checks._floats`
cast with Arrow's *safe* cast, which raised `ArrowInvalid: Integer value ... not in range` out of
`load_table`, a bare message quoting the raw cell with no party, file or column. Now the cast rounds as the
whole-table path does: a feature loads (rounded to float64), a label gets the clear "must be binary" error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sampan.data import DataValidationError, TableSchema, load_table

SCHEMA = TableSchema(id="id", label="y", features=[{"name": "opened_ns", "kind": "int"}])


@pytest.mark.parametrize("column", ["opened_ns", "y"])
def test_big_integers_load_or_name_the_column(tmp_path: Path, column: str) -> None:
    path = tmp_path / "bank.csv"
    big = "1672531200000000001"
    cells = {"y": ["0", "1", "0"], "opened_ns": ["1", "2", "3"]}
    cells[column][0] = big
    path.write_text("id,y,opened_ns\n" + "".join(f"c{i},{cells['y'][i]},{cells['opened_ns'][i]}\n"
                                                   for i in range(3)))
    if column == "y":  # the label must be 0/1: the clear refusal, naming party, file and column
        with pytest.raises(DataValidationError) as info:
            load_table(path, SCHEMA, "bank")
        assert info.value.column == "y" and info.value.party == "bank" and info.value.path == str(path)
        assert "must be binary" in str(info.value)
        return
    data = load_table(path, SCHEMA, "bank")
    assert data.X[0, 0] == float(big)


def test_big_integers_in_parquet_and_markers(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bank.parquet"
    big = 1672531200000000001
    pq.write_table(pa.table({"id": ["c1", "c2"], "y": [0, 1], "opened_ns": pa.array([big, -999], pa.int64())}),
                   path)
    schema = TableSchema(id="id", label="y", features=[{"name": "opened_ns", "kind": "int", "missing": ["-999"],
                                                        "impute": "median"}])
    X = load_table(path, schema, "bank").X
    assert X[0, 0] == float(big) and np.isnan(X[1, 0])
