"""Missing values in vertical runs (issue 13 item 1): each party fills its own columns from its own rows
(nothing leaves it), `sampan run` trains on CSVs with "?", empty and NaN cells, and a missing label at the
label holder is a clear error naming party, file, column and rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from sampan.data import TableSchema, load_table
from sampan.data.missing import impute_locally, local_fill_values, missing_columns
from sampan.runtime.store import Store


def write_parties(root: Path, rows: int = 320, seed: int = 2, label_gap: bool = False) -> dict[str, Path]:
    """A bank (label, `income` with "?" cells) and a card issuer (`spend` with empty and "nan" cells)."""
    rng = np.random.default_rng(seed)
    income, spend = rng.gamma(4.0, 10.0, rows), rng.gamma(2.0, 5.0, rows)
    y = (rng.random(rows) < 1 / (1 + np.exp(-(spend / income * 6 - 2)))).astype(int)
    bank = ["id,income,default"] + [
        f"c{i},{'?' if i % 5 == 0 else f'{income[i]:.3f}'},{'' if label_gap and i == 7 else y[i]}"
        for i in range(rows)]
    card = ["id,spend"] + [f"c{i},{('', 'nan')[i % 2] if i % 6 == 1 else f'{spend[i]:.3f}'}" for i in range(rows)]
    paths = {"bank": root / "bank.csv", "card": root / "card.csv"}
    paths["bank"].write_text("\n".join(bank) + "\n")
    paths["card"].write_text("\n".join(card) + "\n")
    return paths


def config_text(root: Path, paths: dict[str, Path]) -> str:
    return f"""
[run]
name = "vertical-missing"
workflow = "vertical"
seed = 1
store = "sqlite:///{root / 'runs.db'}"
report_dir = "{root / 'reports'}"

[schema]
id = "id"
label = "default"
features = [{{ name = "income", missing = ["?"], impute = "median" }}, {{ name = "spend", impute = "indicator" }}]

[vertical]
label_holder = "bank"
models = ["lr"]
val_fraction = 0.3

[vertical.lr]
epochs = 3
batch_size = 64

[[parties]]
name = "bank"
path = "{paths['bank']}"
features = ["income"]

[[parties]]
name = "card"
path = "{paths['card']}"
features = ["spend"]
"""


def _run(root: Path, text: str) -> tuple[int, str]:
    from sampan.cli import app

    path = root / "run.toml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["run", str(path)], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_vertical_party_imputes_its_own_columns_locally(tmp_path: Path) -> None:
    paths = write_parties(tmp_path)
    schema = TableSchema(id="id", features=[{"name": "spend", "impute": "indicator"}])
    table = load_table(paths["card"], schema, "card")
    assert table.feature_names == ["spend", "spend_missing"]
    holes = np.isnan(table.X[:, 0])
    assert holes.sum() > 0 and np.array_equal(table.X[:, 1], holes.astype(float))
    filled = impute_locally(table)
    assert not np.isnan(filled.X).any()
    mean = np.nanmean(table.X[:, 0])
    assert np.allclose(filled.X[holes, 0], mean) and np.isclose(filled.fill_values[0], mean)
    assert np.isnan(local_fill_values(table.X, missing_columns(schema))[1])  # the indicator itself: never filled


def test_sampan_run_vertical_with_missing_values(tmp_path: Path) -> None:
    paths = write_parties(tmp_path)
    code, output = _run(tmp_path, config_text(tmp_path, paths))
    assert code == 0, output
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    try:
        (run,) = store.list_runs()
        assert run.status == "completed"
    finally:
        store.close()


def test_a_missing_label_is_a_clear_error(tmp_path: Path) -> None:
    paths = write_parties(tmp_path, label_gap=True)
    code, output = _run(tmp_path, config_text(tmp_path, paths))
    assert code != 0
    text = " ".join(output.split())
    assert "party 'bank'" in text and "bank.csv" in text and "column 'default' (label)" in text
    assert "row 8" in text and "a label may never be missing" in text
    assert "Traceback" not in output


def test_a_native_column_is_nan_for_trees_and_the_party_median_for_the_secure_lr(tmp_path: Path) -> None:
    paths = write_parties(tmp_path)
    schema = TableSchema(id="id", features=[{"name": "spend", "impute": "native"}])
    table = load_table(paths["card"], schema, "card")
    filled = impute_locally(table)
    holes = np.isnan(table.X[:, 0])
    assert np.allclose(filled.X[holes, 0], np.nanmedian(table.X[:, 0]))  # what the secure LR and scorecard see
    assert filled.trees_X is not None and np.array_equal(np.isnan(filled.trees_X[:, 0]), holes)
    assert np.isnan(filled.subset(np.flatnonzero(holes)[:2]).trees_X).all()
    text = config_text(tmp_path, paths).replace('impute = "indicator"', 'impute = "native"')
    text = text.replace('models = ["lr"]', 'models = ["lr", "gbdt"]')
    text += "\n[vertical.gbdt]\nn_trees = 3\nmax_depth = 2\n"
    code, output = _run(tmp_path, text)
    assert code == 0, output
