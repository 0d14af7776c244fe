"""Public dataset readers: counts from each SOURCE.md, and locating ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sampan.data import (
    DataValidationError,
    load_german_credit,
    load_south_german_credit,
    load_taiwan_default,
    shared_data_dir,
)


@pytest.fixture(scope="module")
def shared() -> Path:
    found = shared_data_dir()
    if found is None:
        pytest.skip("shared public datasets (../shared/data) not found; set SAMPAN_SHARED_DATA")
    return found


@pytest.mark.shared_data
def test_taiwan_counts_match_source(shared: Path) -> None:
    data = load_taiwan_default(shared / "taiwan_default")
    assert data.party == "taiwan"
    assert data.X.shape == (30_000, 23)
    assert data.y is not None and int(data.y.sum()) == 6_636
    assert round(float(data.y.mean()) * 100, 2) == 22.12
    assert data.feature_names[:6] == ["LIMIT_BAL", "SEX", "EDUCATION", "MARRIAGE", "AGE", "PAY_0"]
    assert data.feature_names[-1] == "PAY_AMT6"
    assert data.ids[0] == "1" and data.ids[-1] == "30000"
    assert data.X[0, 0] == 20_000.0  # LIMIT_BAL of ID 1


@pytest.mark.shared_data
def test_german_credit_counts_and_encoding(shared: Path) -> None:
    data = load_german_credit(shared / "german_credit" / "german.data")
    assert data.X.shape[0] == 1_000
    assert data.y is not None and int(data.y.sum()) == 300
    # 7 numeric attributes + one-hot of the 13 qualitative ones (documented codes)
    assert data.X.shape[1] == 7 + 4 + 5 + 11 + 5 + 5 + 5 + 3 + 4 + 3 + 3 + 4 + 2 + 2
    names = data.feature_names
    status = [i for i, n in enumerate(names) if n.startswith("status=")]
    np.testing.assert_array_equal(data.X[:, status].sum(axis=1), 1.0)
    # first line: A11 6 A34 ... class 1 (good)
    assert data.X[0, names.index("status=A11")] == 1.0
    assert data.X[0, names.index("duration")] == 6.0
    assert data.X[0, names.index("amount")] == 1169.0
    assert data.y[0] == 0 and data.y[1] == 1


@pytest.mark.shared_data
def test_south_german_credit_counts_and_label_direction(shared: Path) -> None:
    data = load_south_german_credit(shared / "south_german_credit")
    assert data.X.shape[0] == 1_000
    assert data.y is not None and int(data.y.sum()) == 300
    names = data.feature_names
    assert "purpose=10" in names and "age" in names and "amount" in names
    # first data line: laufkont 1, laufzeit 18, ..., hoehe 1049, ..., kredit 1 (good -> label 0)
    assert data.X[0, names.index("status=1")] == 1.0
    assert data.X[0, names.index("duration")] == 18.0
    assert data.X[0, names.index("amount")] == 1049.0
    assert data.y[0] == 0


@pytest.mark.shared_data
def test_readers_accept_the_shared_root(shared: Path) -> None:
    assert len(load_german_credit(shared)) == 1_000
    assert len(load_south_german_credit(shared)) == 1_000


def test_shared_data_dir_prefers_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAMPAN_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.setenv("SAMPAN_SHARED_DATA", str(tmp_path / "absent"))
    assert shared_data_dir() is None


def test_shared_data_dir_searches_beside_the_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SAMPAN_SHARED_DATA", raising=False)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    work = tmp_path / "main" / "sub"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert shared_data_dir() == tmp_path / "shared" / "data"


def test_missing_dataset_is_a_validation_error(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError) as info:
        load_taiwan_default(tmp_path)
    assert "party 'taiwan'" in str(info.value) and "UCI_Credit_Card.csv" in str(info.value)


def test_german_class_outside_one_two_is_rejected(tmp_path: Path) -> None:
    line = "A11 6 A34 A43 1169 A65 A75 4 A93 A101 4 A121 67 A143 A152 2 A173 1 A192 A201 {}\n"
    path = tmp_path / "german.data"
    path.write_text(line.format(1) + line.format(3) + line.format(2))
    with pytest.raises(DataValidationError) as info:
        load_german_credit(path)
    assert info.value.column == "class" and info.value.rows == 1


def test_german_unknown_code_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "german.data"
    path.write_text("A19 6 A34 A43 1169 A65 A75 4 A93 A101 4 A121 67 A143 A152 2 A173 1 A192 A201 1\n")
    with pytest.raises(DataValidationError) as info:
        load_german_credit(path)
    assert info.value.column == "status" and "'A19'" in str(info.value)
