"""Found in review (issue 13), fixed: missing markers in the loader (`sampan.data.loaders.load_table`, `_columns`).

R13-LOAD-1: missing cells are "declared per column in the schema" (`missing = [...]`; NaN always in a numeric
column), yet the CSV reader turns the texts Arrow treats as null ("NA", "N/A", "null", "NaN", "nan", "-NaN", ...)
into missing cells in TEXT columns too (ids, categories: `strings_can_be_null=True` with Arrow's default null
values). A category column whose declared categories include "NA" (North America, Namibia, "not applicable") and
whose policy is impute = "category" then files every "NA" row silently under "(missing)": no error, a wrong
one-hot. Without the policy the same file is refused as "missing/NaN value" though the value is a declared
category. (data/loaders.py `read_columns`, ConvertOptions.) The defence: text columns keep every text
(`strings_can_be_null=False`); only the schema's declared markers and blank cells are missing there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sampan.data import TableSchema
from sampan.data.loaders import load_table


def test_a_declared_category_na_is_that_category(tmp_path: Path) -> None:
    """R13-LOAD-1: a declared category "NA" filed under "(missing)"."""
    path = tmp_path / "bank.csv"
    path.write_text("id,y,region\n1,0,EU\n2,1,NA\n3,0,EU\n")
    schema = TableSchema(id="id", label="y", features=[
        {"name": "region", "kind": "category", "categories": ["EU", "NA"], "impute": "category"}])
    data = load_table(path, schema, "bank_a")
    row = dict(zip(data.feature_names, data.X[1], strict=True))
    assert row["region=NA"] == 1.0 and row["region=(missing)"] == 0.0


def test_bounds_whose_width_is_not_finite_are_refused_at_config_time() -> None:
    """R13-LOAD-2: [schema] bounds are checked finite with low < high, but not that high − low is finite: with
    bounds = [-1e308, 1.7e308] a DP run is accepted, charged, and every bank fails on `impute_stats` with numpy's
    "Too many bins for data range" (no column named); a mean column silently gets z = 0 for every value."""
    with pytest.raises(ValueError, match="income"):
        TableSchema(id="id", label="y", features=[{"name": "income", "impute": "median", "bounds": [-1e308, 1.7e308]}])


def test_a_declared_marker_still_marks_a_text_cell_missing(tmp_path: Path) -> None:
    """R13-LOAD-1's other side: a declared marker ("?") and a blank cell stay missing in a category column."""
    path = tmp_path / "bank.csv"
    path.write_text("id,y,region\n1,0,EU\n2,1,?\n3,0,\n4,1,NA\n")
    schema = TableSchema(id="id", label="y", features=[
        {"name": "region", "kind": "category", "categories": ["EU", "NA"], "impute": "category", "missing": ["?", ""]}])
    data = load_table(path, schema, "bank_a")
    missing = data.X[:, data.feature_names.index("region=(missing)")]
    assert missing.tolist() == [0.0, 1.0, 1.0, 0.0]
