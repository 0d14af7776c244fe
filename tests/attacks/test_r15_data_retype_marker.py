"""R15-DATA-2 (fixed): a type change late in a CSV turns a declared numeric missing marker into a real value.

Validation: a bank declares `missing = ["-999"]` with `impute = "median"` on a float column whose sentinel
cells are written `-999.0` (as pandas writes them). The streamed CSV read types that column from the first
block, so `-999.0` is a number equal to the marker and becomes missing (as in the whole-table path). Safe
behaviour: the same cells are missing whatever happens elsewhere in the file. It happened: when any *other*
column changed type after the first block (integers for 4 MB, then one `12.5`: ordinary data), the loader
(`stream.load_source` on `Retype`) re-read every column as text, and `_arrow_checks.apply_markers` compared
texts only: `"-999.0" != "-999"`, so every sentinel was kept as the value -999.0. Now a float/int column's
text cells that are numbers equal to a numeric marker are missing too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sampan.data import TableSchema, from_columns
from sampan.data.loaders import read_columns
from sampan.data.sources import open_source
from sampan.data.stream import load_source

SCHEMA = TableSchema(id="id", features=[{"name": "balance", "missing": ["-999"], "impute": "median"},
                                        {"name": "tenure"}])


def _csv(path: Path, late_decimal: bool) -> Path:
    n = 3000
    rows = ["id,balance,tenure"] + [f"c{i},{'-999.0' if i % 10 == 0 else i},{i}" for i in range(n)]
    if late_decimal:  # an unrelated column: integers in the first block, one decimal at the end
        rows[-1] = f"c{n - 1},{n - 1},{n - 1}.5"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_marker_cells_stay_missing_after_a_late_type_change(tmp_path: Path) -> None:
    clean = load_source(open_source(_csv(tmp_path / "a.csv", False), "bank", batch_rows=1 << 16,
                                    block_bytes=4096), SCHEMA, "bank")
    assert np.isnan(clean.X[::10, 0]).all()  # the sentinels are missing without the late change
    path = _csv(tmp_path / "b.csv", True)
    whole = from_columns(read_columns(path, "bank", string_columns=["id"]), SCHEMA, "bank", path=str(path))
    assert np.isnan(whole.X[::10, 0]).all()  # and in the whole-table path with it
    streamed = load_source(open_source(path, "bank", batch_rows=1 << 16, block_bytes=4096), SCHEMA, "bank")
    kept = np.flatnonzero(streamed.X[:, 0] == -999.0)
    assert kept.size == 0, f"{kept.size} sentinel cells kept as the value -999.0 (rows {kept[:5] + 1} ...)"
