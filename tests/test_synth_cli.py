"""``sampan synth fit | sample | report | federated`` through the Typer sub-app."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sampan.cli.synth import synth_app
from sampan.synth import SynthModel, read_csv_table
from sampan.synth.demo import SME_SYNTH_SCHEMA, consortium_tables
from sampan.synth.table import write_csv_table

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth_cli")
    table = consortium_tables(4000, seed=2)["bank_harbour"]
    n = len(table["sector"])
    write_csv_table({k: v[: n // 2] for k, v in table.items()}, SME_SYNTH_SCHEMA, folder / "train.csv")
    write_csv_table({k: v[n // 2:] for k, v in table.items()}, SME_SYNTH_SCHEMA, folder / "holdout.csv")
    (folder / "schema.json").write_text(SME_SYNTH_SCHEMA.to_json())
    return folder


def _ok(args: list[str]) -> str:
    result = runner.invoke(synth_app, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_fit_sample_report(files) -> None:
    out = _ok(["fit", "--data", str(files / "train.csv"), "--epsilon", "1", "--out", str(files / "model"),
               "--schema", str(files / "schema.json"), "--seed", "1"])
    assert "ε spent 1.0000 of 1" in out and "not private" in out
    model = SynthModel.load(files / "model")
    assert model.receipt["reproducible_not_private"] is True

    (files / "spec.toml").write_text('rows = 800\nconstraints = ["debt_to_revenue <= 3"]\n'
                                     '[[targets]]\ncolumn = "has_guarantee"\nuniform = true\n')
    out = _ok(["sample", "--model", str(files / "model"), "--out", str(files / "synth.csv"),
               "--spec", str(files / "spec.toml"), "--target", "default_12m: 1=0.2, 0=0.8",
               "--constraint", "log10_loan_amount_hkd <= log10_annual_revenue_hkd"])
    assert "Wrote 800 rows" in out
    rows = read_csv_table(files / "synth.csv", SME_SYNTH_SCHEMA)
    assert (rows["has_guarantee"] == "true").sum() == 400 and (rows["default_12m"] == "1").sum() == 160
    assert np.all(rows["debt_to_revenue"] <= 3)
    sampling = json.loads((files / "synth.sampling.json").read_text())
    assert sampling["exact"] is True and len(sampling["constraints"]) == 2

    out = _ok(["report", "--model", str(files / "model"), "--synthetic", str(files / "synth.csv"),
               "--real", str(files / "train.csv"), "--holdout", str(files / "holdout.csv"),
               "--out", str(files / "report"), "--group", "sector", "--constraint", "debt_to_revenue <= 3",
               "--sampling", str(files / "synth.sampling.json")])
    assert "tstr_auc" in out and (files / "report" / "report.confidential.html").exists()
    doc = json.loads((files / "report" / "report.confidential.json").read_text())
    assert doc["constraints"][0]["violations"] == 0 and "bias" in doc and "fidelity" in doc
    shareable = json.loads((files / "report" / "report.releasable.json").read_text())
    assert shareable["constraints"][0]["violations"] == 0 and "fidelity" not in shareable


def test_errors_name_file_column_or_field(files, tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text((files / "train.csv").read_text().replace(',"retail"', ',"bakery"', 1))
    result = runner.invoke(synth_app, ["fit", "--data", str(bad), "--epsilon", "1", "--out", str(tmp_path / "m"),
                                       "--schema", str(files / "schema.json")])
    assert result.exit_code == 2 and "bad.csv" in result.output and "'sector'" in result.output
    assert "data rows" in result.output and "bakery" not in result.output  # where, never the value itself
    assert not (tmp_path / "m").exists()
    result = runner.invoke(synth_app, ["sample", "--model", str(tmp_path), "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 2 and "not a synthesiser model folder" in result.output
    result = runner.invoke(synth_app, ["fit", "--data", str(files / "train.csv"), "--epsilon", "1", "--out",
                                       str(tmp_path / "m2"), "--label", "default_12m", "--categories",
                                       "default_12m=0,1"])  # no schema: the domain is released under DP
    assert result.exit_code == 0 and "released under DP" in result.output, result.output
    assert SynthModel.load(tmp_path / "m2").receipt["domain"]["source"] == "dp"
    (tmp_path / "t.csv").write_text((files / "train.csv").read_text())
    (tmp_path / "t.schema.json").write_text(SME_SYNTH_SCHEMA.to_json())  # found beside the data
    result = runner.invoke(synth_app, ["fit", "--data", str(tmp_path / "t.csv"), "--epsilon", "1", "--out",
                                       str(tmp_path / "m3")])
    assert result.exit_code == 0 and "released under DP" not in result.output
    assert SynthModel.load(tmp_path / "m3").receipt["domain"]["source"] == "declared"


@pytest.mark.slow
def test_federated_demo(tmp_path) -> None:
    out = _ok(["federated", "--epsilon", "2", "--n-smes", "3000", "--seed", "4", "--out", str(tmp_path / "fm"),
               "--report-dir", str(tmp_path / "rep")])
    assert "federated synthesis (Sampan)" in out and "central synthesis" in out
    assert out.count("ε spent") == 3
    model = SynthModel.load(tmp_path / "fm")
    assert model.receipt["federated"] and len(model.receipt["parties"]) == 3
    assert (tmp_path / "rep" / "report.releasable.html").exists()
    assert (tmp_path / "rep" / "report.confidential.html").exists()


def test_example_schema_and_spec(files, tmp_path) -> None:
    examples = __import__("pathlib").Path(__file__).resolve().parent.parent / "examples"
    _ok(["fit", "--data", str(files / "train.csv"), "--epsilon", "2", "--out", str(tmp_path / "m"),
         "--schema", str(examples / "synth" / "sme_schema.toml")])
    out = _ok(["sample", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "s.csv"),
               "--spec", str(examples / "synth" / "sme_sample.toml"), "--rows", "1200"])
    assert "Wrote 1,200 rows" in out
    rows = read_csv_table(tmp_path / "s.csv", SME_SYNTH_SCHEMA)
    assert (rows["default_12m"] == "1").sum() == 120 and (rows["sector"] == "retail").sum() == 200
