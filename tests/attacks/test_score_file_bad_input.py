"""R13-SCO-4..8, 12 (review, issue 13): `sampan score --model NAME --data applicants.csv` on malformed applicants
files: a clear error naming the file, column and rows, nothing half-written, never a silent score.

R13-SCO-4: a GBDT scores a missing cell ('nan', '', '?') in a column trained WITHOUT a missing policy (neither
native nor imputed) silently, down each split's untrained default direction (`Predictor._fill`: any NaN passes when
``native_missing``, which is every GBDT); the LR model refuses the same cell naming the column and row.
R13-SCO-5: a header naming a column twice scores silently with one of the two values (the later one:
`read_chunks` builds a dict by name), so the PD depends on column order.
R13-SCO-6: a non-UTF-8 (Latin-1) applicants file gives "'utf-8' codec can't decode byte ..." naming no file,
column or row (`cli/score.py` `_all_text` opens the header outside the DataError handling).
R13-SCO-7: `--out` naming an existing directory leaves the complete `.NAME.partial` file behind
(`ScoreWriter.__exit__`: the rename fails after the error-path cleanup was skipped).
R13-SCO-8: duplicate and empty applicant ids are scored silently (one output row per copy; id "" for a blank),
where the vertical path refuses empty ids naming the rows.
R13-SCO-12: a UTF-8 file with a byte-order mark (Excel's "CSV UTF-8") silently rewrites ids with leading zeros
('000123' -> '123', '007' -> '7'): `_all_text` reads the header as plain UTF-8, so its text-type map keys the first
column as '\ufeffbr_number', pyarrow (which drops the BOM) infers that column as integers.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from _scoring_models import NATIVE, train_models
from typer.testing import CliRunner

import sampan
from sampan.cli import app
from sampan.runtime.scorers import load_scorer
from sampan.runtime.store import Store

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return train_models(tmp_path_factory)


def _rows(trained: dict) -> tuple[list[str], list[list[str]]]:
    with open(trained["applicants"], newline="") as handle:
        table = list(csv.reader(handle))
    return table[0], table[1:]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


def test_a_tree_model_refuses_a_gap_in_a_column_without_a_missing_policy(trained: dict) -> None:
    row = dict(trained["rows"][0])
    assert "years_in_business" != NATIVE  # trained with no missing policy: training would refuse a gap here
    with pytest.raises(sampan.DataError, match="years_in_business"):
        load_scorer(Store.open(trained["store"]), "lr").score([{**row, "years_in_business": "nan"}])
    with pytest.raises(sampan.DataError, match="years_in_business"):
        load_scorer(Store.open(trained["store"]), "trees").score([{**row, "years_in_business": "nan"}])


def test_a_header_naming_a_column_twice_is_refused(trained: dict, tmp_path: Path) -> None:
    header, rows = _rows(trained)
    path = _write(tmp_path / "twice.csv", [*header, "years_in_business"], [[*rows[0], "99999"]])
    out = tmp_path / "twice.json"
    result = runner.invoke(app, ["score", "--model", "lr", "--data", str(path), "--out", str(out),
                                 "--store", trained["store"]])
    assert result.exit_code == 2 and "years_in_business" in result.output, result.output
    assert not out.exists()


def test_a_latin1_applicants_file_is_an_error_naming_the_file(trained: dict, tmp_path: Path) -> None:
    header, rows = _rows(trained)
    path = tmp_path / "latin1.csv"
    path.write_bytes((",".join(header) + "\n" + ",".join([*rows[0][:-1], "caf\xe9"]) + "\n").encode("latin-1"))
    result = runner.invoke(app, ["score", "--model", "lr", "--data", str(path), "--store", trained["store"]])
    assert result.exit_code == 2 and "latin1.csv" in result.output, result.output


def test_a_failed_rename_leaves_no_partial_file(trained: dict, tmp_path: Path) -> None:
    (tmp_path / "scores.csv").mkdir()
    result = runner.invoke(app, ["score", "--model", "lr", "--data", str(trained["applicants"]), "--out",
                                 str(tmp_path / "scores.csv"), "--store", trained["store"]])
    assert result.exit_code != 0
    assert not list(tmp_path.glob(".*partial")), "a half-done output file was left behind"


def test_duplicate_or_empty_ids_are_refused_naming_the_rows(trained: dict, tmp_path: Path) -> None:
    header, rows = _rows(trained)
    id_at = header.index(trained["schema"].id_column)
    blank = [*rows[1]]
    blank[id_at] = ""
    path = _write(tmp_path / "ids.csv", header, [rows[0], rows[0], blank])
    out = tmp_path / "ids.json"
    result = runner.invoke(app, ["score", "--model", "lr", "--data", str(path), "--out", str(out),
                                 "--store", trained["store"]])
    scored = json.loads(out.read_text()) if out.exists() else []
    assert result.exit_code == 2 and "row" in result.output, (result.output, [r["id"] for r in scored])


def test_a_bom_file_keeps_the_ids_as_written(trained: dict, tmp_path: Path) -> None:
    header, rows = _rows(trained)
    assert header[0] == trained["schema"].id_column
    ids = ["000123", "000456", "007"]
    rows = [[i, *r[1:]] for i, r in zip(ids, rows[:3], strict=True)]
    path = tmp_path / "excel.csv"
    path.write_text("\r\n".join(",".join(v) for v in [header, *rows]) + "\r\n", encoding="utf-8-sig")
    out = tmp_path / "excel.json"
    result = runner.invoke(app, ["score", "--model", "lr", "--data", str(path), "--out", str(out),
                                 "--store", trained["store"]])
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(out.read_text())] == ids
