"""R15-DATA-4: an integer column beyond 2**53 (an epoch in nanoseconds, a BIGINT key) ends the load in a raw
`ArrowInvalid`, not a `DataValidationError` naming party, file and column.

Validation: bad or unusual input must get a clear error naming the party/file/column, never a traceback. A
bank's CSV (or Parquet, or SQL BIGINT) has a feature column of int64 values such as 1672531200000000001
(nanosecond timestamps) or a label column with such a value. Before issue 15 the whole-table path read them
(float64, rounded) or refused the label with a `DataValidationError`. What happens: `_arrow_checks._floats`
casts with Arrow's *safe* cast, which raises `ArrowInvalid: Integer value ... not in range` out of
`load_table`; the party agent forwards that bare message (quoting the raw cell value, with no party, file or
column) to the coordinator as the error reply.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sampan.data import DataValidationError, TableSchema, load_table

SCHEMA = TableSchema(id="id", label="y", features=[{"name": "opened_ns", "kind": "int"}])


@pytest.mark.xfail(strict=True, reason="R15-DATA-4: int64 beyond 2**53 raises a bare ArrowInvalid from the "
                                       "streamed float cast")
@pytest.mark.parametrize("column", ["opened_ns", "y"])
def test_big_integers_load_or_name_the_column(tmp_path: Path, column: str) -> None:
    path = tmp_path / "bank.csv"
    big = "1672531200000000001"
    cells = {"y": ["0", "1", "0"], "opened_ns": ["1", "2", "3"]}
    cells[column][0] = big
    path.write_text("id,y,opened_ns\n" + "".join(f"c{i},{cells['y'][i]},{cells['opened_ns'][i]}\n"
                                                   for i in range(3)))
    try:
        data = load_table(path, SCHEMA, "bank")
    except DataValidationError as exc:  # a clear refusal is fine (the label must be 0/1)
        assert exc.column == column and exc.party == "bank"
        return
    assert column == "opened_ns" and data.X[0, 0] == float(big)
