"""Finding 13: `synth fit` must not write real values into the model it calls record-free.

The attacker is anyone who reads a released model folder (model.json + tables.npz). On the old code
the schema was read off the records: a '?' missing marker turned a numeric ratio column into a
categorical one listing every real value, an id column was published whole, a category held by one
customer appeared verbatim, and numeric bounds were the exact extreme values.

An adversarial review of the DP domain release then found two deterministic leaks, pinned here with
real (CSPRNG) noise, since they did not depend on the noise at all: the receipt counted the distinct
values of each categorical column, and the CSV reader inferred each column's type from the whole file,
so one record's text value changed every released category name of its column.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sampan.cli.synth import synth_app
from sampan.synth import SynthConfig, SynthModel
from sampan.synth.domain import IdentifierColumnError
from sampan.synth.fit import fit_undeclared

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


def _fit_releasing(csv: Path, out: Path) -> dict:
    """A real release (CSPRNG noise, no seed) of a table without a declared schema; model.json as a dict."""
    result = runner.invoke(synth_app, ["fit", "--data", str(csv), "--epsilon", "2", "--out", str(out),
                                       "--label", "y", "--categories", "y=0,1"])
    assert result.exit_code == 0, result.output
    return json.loads((out / "model.json").read_text())


def _review_csv(path: Path, extra: tuple[str, ...] | None = None, n: int = 2000) -> Path:
    rng = np.random.default_rng(0)
    rows = [(str(rng.integers(0, 2)), f"c{rng.integers(0, 30)}", str(rng.choice(["TRUE", "FALSE"])),
             f"2020-01-0{rng.integers(1, 4)} 10:00:00", f"{rng.normal():.3f}") for _ in range(n)]
    rows += [extra] if extra else []
    path.write_text("y,city,guarantee,opened,x\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def test_receipt_does_not_count_the_distinct_values_of_a_column(tmp_path) -> None:
    """On the reviewed code the 'categories of city' release said cells=30 on D and 31 on D' (one more
    distinct city), whatever the noise."""
    d = _fit_releasing(_review_csv(tmp_path / "d.csv"), tmp_path / "m0")
    d1 = _fit_releasing(_review_csv(tmp_path / "d1.csv", ("1", RARE_CITY, "TRUE", "2020-01-01 10:00:00", "0.1")),
                        tmp_path / "m1")

    def city_release(model: dict) -> dict:
        releases = model["receipt"]["parties"]["data_owner"]["releases"]
        return next(r for r in releases if "categories of 'city'" in r["note"])

    assert city_release(d)["cells"] is None and city_release(d1)["cells"] is None
    assert "data-dependent" in city_release(d)["cells_note"]
    assert {k: v for k, v in city_release(d).items() if k not in ("threshold", "threshold_delta")} \
        == {k: v for k, v in city_release(d1).items() if k not in ("threshold", "threshold_delta")}


def test_one_record_cannot_change_how_other_cells_of_its_column_are_read(tmp_path) -> None:
    """On the reviewed code one record's 'unknown' among TRUE/FALSE made the whole column text instead
    of bool, and the released names went from false/true to FALSE/TRUE, whatever the noise."""
    d = _fit_releasing(_review_csv(tmp_path / "d.csv"), tmp_path / "m0")
    d1 = _fit_releasing(_review_csv(tmp_path / "d1.csv", ("1", "c1", "unknown", "soon", "0.1")), tmp_path / "m1")

    def cats(model: dict, column: str) -> list[str]:
        col = next(c for c in model["schema"]["columns"] if c["name"] == column)
        return sorted(c for c in col["categories"] if c != "(other)")

    assert cats(d, "guarantee") == cats(d1, "guarantee") == ["FALSE", "TRUE"]  # as written in the file
    assert cats(d, "opened") == cats(d1, "opened")  # timestamps: each cell's own text


def _undeclared(name: str, column: np.ndarray, n: int = 3000) -> SynthModel:
    rng = np.random.default_rng(5)
    table = {"y": rng.choice(["0", "1"], n).astype(object), name: column, "x": rng.normal(size=n)}
    return fit_undeclared(table, SynthConfig(epsilon=8.0), label="y", rng=np.random.default_rng(6))


def _id_columns(n: int = 3000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    customers = np.array([f"CUST{i:06d}" for i in rng.integers(0, n // 2.5, n)], dtype=object)  # ~35% distinct
    accounts = np.array([f"{i}" for i in rng.integers(0, n // 5, n)], dtype=object)  # ~18% distinct, as text
    rownum = np.arange(n, dtype=float)
    rownum[5] = rownum[6]  # a row number with one duplicate
    return {"customer_id": customers, "CustomerId": customers, "accountID": accounts, "IBAN": customers,
            "row": rownum}


@pytest.mark.parametrize("name", list(_id_columns()))
def test_id_named_columns_with_repeated_values_are_refused(name) -> None:
    """Transactions tables repeat each customer's id: fewer than half distinct, still an identifier. On the
    reviewed code text columns skipped the name check, and a row number with one duplicate passed."""
    with pytest.raises(IdentifierColumnError, match=f"column '{name}' looks like an identifier"):
        _undeclared(name, _id_columns()[name])


def _ordinary_columns(n: int = 3000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    return {"amount_paid": np.round(rng.lognormal(8, 1, n), 2), "paid": rng.integers(0, 10**6, n).astype(float),
            "humid": rng.uniform(0, 100, n), "valid": rng.choice(["yes", "no"], n).astype(object),
            "branch_id": rng.choice([f"B{i:02d}" for i in range(20)], n).astype(object),
            "ideal_score": rng.normal(size=n), "hybrid": rng.normal(size=n)}


@pytest.mark.parametrize("name", list(_ordinary_columns()))
def test_ordinary_columns_whose_names_end_in_id_are_accepted(name) -> None:
    """'_?id$' matched amount_paid, paid and humid: continuous columns were refused as identifiers. A
    branch id with 20 values is a category, not an identifier."""
    model = _undeclared(name, _ordinary_columns()[name])
    assert name in model.schema.names
