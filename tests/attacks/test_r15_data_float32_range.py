"""R15-DATA-3 (fixed): `dtype = "float32"` turns finite values beyond float32's range into infinities the checks refuse.

Validation: the loader refuses infinite feature values ("declared float but has ... non-numeric value", an
infinity is a type error), so no learner ever sees inf. A bank opts into the compact form
(`[data.<name>] dtype = "float32"`, `load_table(..., dtype=np.float32)`) on a table with one finite value of
1e39 (a mis-scaled amount, a sentinel 1e300). Safe behaviour: a clear error naming the column and rows (the
value does not fit float32; use float64), as for an infinity. It happened: `_arrow_checks.check_numeric`
checked the float64 value (finite: accepted), then `stream._Checks.batch` wrote it into the float32 X as +inf.
Now a float32 load tallies finite values beyond float32's range and refuses them naming the column and rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sampan.data import DataValidationError, TableSchema, load_table

SCHEMA = TableSchema(id="id", label="y", features=[{"name": "amount"}])


def test_float32_load_never_hands_a_learner_an_infinity(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_text("id,y,amount\nc1,0,1e39\nc2,1,2.5\nc3,0,3\n")
    assert np.isfinite(load_table(path, SCHEMA, "bank", dtype=np.float64).X).all()  # float64: finite, accepted
    with pytest.raises(DataValidationError) as info:
        load_table(path, SCHEMA, "bank", dtype=np.float32)
    assert info.value.column == "amount" and info.value.party == "bank"
    assert "float32's range" in str(info.value) and "row 1" in str(info.value), str(info.value)


def test_float32_load_accepts_values_inside_its_range(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_text("id,y,amount\nc1,0,3e38\nc2,1,-3e38\nc3,0,1e-50\n")
    X = load_table(path, SCHEMA, "bank", dtype=np.float32).X
    assert np.isfinite(X).all() and X[2, 0] == 0.0  # tiny values flush to 0 (documented)
