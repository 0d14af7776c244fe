"""Finding 13: `synth fit` must not write real values into the model it calls record-free.

The attacker is anyone who reads a released model folder (model.json + tables.npz). On the old code
the schema was read off the records: a '?' missing marker turned a numeric ratio column into a
categorical one listing every real value, an id column was published whole, a category held by one
customer appeared verbatim, and numeric bounds were the exact extreme values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sampan.cli_synth import synth_app
from sampan.synth import SynthModel

runner = CliRunner()
RARE_CITY = "Zzyzx-Springs"  # held by exactly one customer
EXTREME_RATIO = 987.654321  # the largest ratio: one customer's exact value


def _write_csv(path: Path, n: int = 3000, *, with_id: bool = False, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    cities = rng.choice(["Kowloon", "Central", "Sha Tin"], size=n).astype(object)
    cities[17] = RARE_CITY
    ratio = np.round(rng.lognormal(0.0, 0.6, size=n), 6).astype(object)
    ratio[5] = EXTREME_RATIO
    missing = rng.random(n) < 0.05
    ratio[missing] = "?"  # the public bankruptcy data's missing marker
    y = (rng.random(n) < 0.3).astype(int)
    lines = (["customer_id,city,ratio,y"] if with_id else ["city,ratio,y"])
    for i in range(n):
        row = [str(cities[i]), str(ratio[i]), str(y[i])]
        lines.append(",".join(([f"C{100000 + i:07d}"] if with_id else []) + row))
    path.write_text("\n".join(lines) + "\n")
    return path


def _fit(data: Path, out: Path, *extra: str):
    return runner.invoke(synth_app, ["fit", "--data", str(data), "--epsilon", "2", "--out", str(out),
                                     "--label", "y", "--categories", "y=0,1", "--seed", "3", *extra])


def _model_text(folder: Path) -> str:
    """Everything an attacker can read from the model folder, as text (JSON + every array's values)."""
    text = (folder / "model.json").read_text()
    with np.load(folder / "tables.npz", allow_pickle=False) as npz:
        for key in npz.files:
            text += "\n" + key + " " + " ".join(repr(float(v)) for v in np.ravel(npz[key]))
    return text


def test_id_column_is_refused_and_nothing_is_written(tmp_path) -> None:
    data = _write_csv(tmp_path / "with_id.csv", with_id=True)
    result = _fit(data, tmp_path / "m", "--drop-incomplete-rows")
    assert result.exit_code == 2, result.output
    assert "'customer_id'" in result.output and "identifier" in result.output
    assert "C0100000" not in result.output
    assert not (tmp_path / "m").exists()


def test_rare_category_and_exact_extremes_never_reach_the_model(tmp_path) -> None:
    data = _write_csv(tmp_path / "t.csv")
    result = _fit(data, tmp_path / "m", "--drop-incomplete-rows")
    assert result.exit_code == 0, result.output
    model = SynthModel.load(tmp_path / "m")
    text = _model_text(tmp_path / "m")
    assert RARE_CITY not in text
    assert "987.654321" not in text and repr(EXTREME_RATIO) not in text
    # The domain is a charged DP release, listed in the receipt.
    assert model.receipt["domain"]["source"] == "dp"
    notes = [r["note"] for r in model.receipt["parties"]["data_owner"]["releases"]]
    assert any("categories of 'city'" in n for n in notes) and any("bounds of 'ratio'" in n for n in notes)
    assert model.receipt["parties"]["data_owner"]["epsilon_spent"] <= 2.0
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "no row of the data" in said and "holds no records" not in said


def test_numeric_column_with_question_marks_stays_numeric(tmp_path) -> None:
    data = _write_csv(tmp_path / "t.csv")
    result = _fit(data, tmp_path / "m", "--drop-incomplete-rows")
    assert result.exit_code == 0, result.output
    schema = SynthModel.load(tmp_path / "m").schema
    assert schema.column("ratio").kind == "numeric"
    lo, hi = schema.column("ratio").bounds  # type: ignore[misc]
    assert all(float(np.log2(b)).is_integer() or b == 0 for b in (lo, hi) if b != 0)  # public grid edges
    # Without the explicit choice, missing values are refused with an error naming the column.
    result = _fit(data, tmp_path / "m2")
    assert result.exit_code == 2 and "'ratio'" in result.output and "--drop-incomplete-rows" in result.output


def test_a_declared_category_is_kept_even_if_rare(tmp_path) -> None:
    data = _write_csv(tmp_path / "t.csv")
    cities = f"city=Kowloon,Central,Sha Tin,{RARE_CITY}"
    result = _fit(data, tmp_path / "m", "--drop-incomplete-rows", "--categories", cities)
    assert result.exit_code == 0, result.output
    assert RARE_CITY in SynthModel.load(tmp_path / "m").schema.column("city").categories  # type: ignore[operator]


def test_fitting_on_an_old_inferred_schema_is_refused(tmp_path) -> None:
    from sampan.synth import SchemaError, SynthConfig, SynthSchema, fit_synthesizer

    schema = SynthSchema.from_dict({"label": "y", "domain_source": "inferred", "columns": [
        {"name": "y", "kind": "categorical", "categories": ["0", "1"]},
        {"name": "x", "kind": "numeric", "bounds": [0, 1]}]})
    table = {"y": np.array(["0", "1"] * 50, dtype=object), "x": np.linspace(0, 1, 100)}
    with pytest.raises(SchemaError, match="read off the records"):
        fit_synthesizer(table, schema, SynthConfig(epsilon=1.0))
    assert json.loads(schema.to_json())["domain_source"] == "inferred"
