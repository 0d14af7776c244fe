"""Missing-value policies in the schema and the loader (issue 13 item 1): markers, each policy, the error that says
how to fix it, and the fill helpers; plus DP1 `auto` noise and its destructive-noise rule (item 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sampan.config import parse_config
from sampan.data import DataValidationError, TableSchema, load_table
from sampan.data.missing import fill_missing, local_fill_values, median_from_histogram, missing_columns
from sampan.horizontal.dp1_scaler import auto_dp1_noise, dp1_moment_noise, dp1_warning

CSV = """id,y,income,debt,sector
1,0,10,?,retail
2,1,?,-999,
3,0,,3,food
4,1,nan,4,?
5,0,40,NA,retail
"""


DEFAULTS = {"income": {"missing": ["?"], "impute": "median"}, "debt": {"missing": ["?", "-999"], "impute": "indicator"},
            "sector": {"kind": "category", "categories": ["retail", "food"], "missing": ["?"], "impute": "category"}}


def _table(tmp_path: Path, **features: dict) -> tuple[np.ndarray, list[str]]:
    """The CSV above loaded with `DEFAULTS`, some columns' specs replaced by ``features``."""
    path = tmp_path / "bank.csv"
    path.write_text(CSV)
    specs = [{"name": n, **features.get(n, spec)} for n, spec in DEFAULTS.items()]
    data = load_table(path, TableSchema(id="id", label="y", features=specs), "bank")
    return data.X, data.feature_names


def test_each_policy_encodes_its_columns(tmp_path: Path) -> None:
    X, names = _table(tmp_path)
    assert names == ["income", "debt", "debt_missing", "sector=retail", "sector=food", "sector=(missing)"]
    assert np.array_equal(np.isnan(X[:, 0]), [False, True, True, True, False])  # "?", empty and "nan"
    assert np.array_equal(X[:, 2], [1, 1, 0, 0, 1])  # "?", the numeric marker -999 and "NA"
    assert np.array_equal(X[:, 3:], [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1], [1, 0, 0]])


def test_native_and_mean_keep_nan_until_filled(tmp_path: Path) -> None:
    X, _ = _table(tmp_path, income={"missing": ["?"], "impute": "native"}, debt={"missing": ["?"], "impute": "mean"})
    assert np.isnan(X[:, 0]).sum() == 3 and np.isnan(X[:, 1]).sum() == 2


def test_error_policy_names_party_file_column_rows_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError) as caught:
        _table(tmp_path, income={"missing": ["?"]})
    message = str(caught.value)
    assert "party 'bank'" in message and "bank.csv" in message and "column 'income'" in message
    assert "rows 2, 3, 4" in message
    assert 'impute = "median" | "mean" | "indicator" | "native"' in message
    with pytest.raises(DataValidationError, match=r"non-numeric value.*'\?'.*declare"):
        _table(tmp_path, income={"impute": "median"})  # "?" not declared as a marker: named, with the fix


def test_table_defaults_reach_every_column_and_category_policies_are_checked() -> None:
    schema = TableSchema(id="id", missing=["?"], impute="median", features=[
        "a", {"name": "b", "impute": "native"}, {"name": "c", "kind": "category", "categories": ["x"]}])
    assert [(f.missing, f.policy) for f in schema.features] == [(("?",), "median"), (("?",), "native"),
                                                                 (("?",), "category")]
    assert TableSchema(id="id", features=["a"]).to_dict() == {"id": "id", "features": [{"name": "a", "kind": "float"}]}
    with pytest.raises(ValueError, match="does not apply to a category column"):
        TableSchema(id="id", features=[{"name": "c", "kind": "category", "categories": ["x"], "impute": "median"}])
    with pytest.raises(ValueError, match="clashes"):
        TableSchema(id="id", features=[{"name": "a", "impute": "indicator"}, "a_missing"])


def test_fill_helpers() -> None:
    schema = TableSchema(id="id", features=[{"name": "a", "impute": "median"}, {"name": "b", "impute": "native"}])
    X = np.array([[1.0, np.nan], [np.nan, 2.0], [5.0, 3.0], [7.0, np.nan]])
    values = local_fill_values(X, missing_columns(schema))
    assert values[0] == 5.0 and np.isnan(values[1])
    filled = fill_missing(X, values, missing_columns(schema))
    assert filled[1, 0] == 5.0 and np.isnan(filled[0, 1])  # native keeps NaN
    with pytest.raises(ValueError, match=r"missing values in \['a'\]"):
        fill_missing(X, np.full(2, np.nan), missing_columns(schema))
    with pytest.raises(ValueError, match="finite"):
        fill_missing(X, np.array([np.inf, np.nan]), missing_columns(schema))
    assert median_from_histogram(np.array([0, 2, 2, 0]), 0.0, 4.0) == 2.0
    assert median_from_histogram(np.array([-3.0, 0, 0, 0]), 0.0, 4.0) == 2.0  # empty after clipping: the middle


def test_dp1_auto_noise_follows_budget_share_and_data_size() -> None:
    privacy = parse_config({"run": {"name": "x"}, "source": {"kind": "consortium"}, "privacy": {
        "epsilon": 1.0, "dp1": {"noise_multiplier": "auto", "bounds": {"*": [0, 1]}}}}).privacy
    assert privacy is not None
    small = auto_dp1_noise(privacy, 10, {"a": 100, "b": 100})
    large = auto_dp1_noise(privacy, 10, {"a": 20_000, "b": 20_000})
    assert small < large  # more rows: more noise still keeps the scaler accurate, and spends less
    assert dp1_moment_noise(large, 10, {"a": 20_000, "b": 20_000}) == pytest.approx(0.01, rel=1e-6)
    floor = auto_dp1_noise(privacy, 10, {"a": 1, "b": 1})  # tiny data: never below the budget share's noise
    assert floor == small


def test_dp1_warning_rule() -> None:
    rows = {"a": 500, "b": 500}
    narrow = {"mean": np.array([0.5, 0.5]), "scale": np.array([0.25, 0.25])}  # std: half the half-range
    assert dp1_warning(1.0, narrow, [[0, 1], [0, 1]], ["x", "y"], rows) is None
    message = dp1_warning(10.0, {"mean": np.array([0.99, 0.5]), "scale": np.array([0.01, 0.25])}, [[0, 1], [0, 1]],
                          ["x", "y"], rows)
    assert message is not None and "destructive" in message and "['x']" in message and "auto" in message
    assert "Features ['x'] sit at an edge of their bounds" in message  # clipped by too narrow bounds


def test_dp1_bounds_of_a_missing_indicator_default_to_0_1() -> None:
    from sampan.config import DP1Section
    from sampan.horizontal.dp1_scaler import dp1_bounds

    section = DP1Section(noise_multiplier=1.0, bounds={"a": (0, 5)})
    assert dp1_bounds(section, ["a", "a_missing"]) == [[0.0, 5.0], [0.0, 1.0]]
    with pytest.raises(ValueError, match="b_missing"):  # not the indicator of a column here: no silent default
        dp1_bounds(section, ["a", "b_missing"])
