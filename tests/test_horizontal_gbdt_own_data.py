"""Horizontal GBDT on the banks' own files (issue 13 item 2): `sampan run` with `[[parties]] path = ...` CSVs and
`model.kind = "gbdt"` trains, registers the model, writes the report and scores through `sampan.load_model`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

import sampan
from sampan.runtime.store import Store

BANKS = ("bank_a", "bank_b", "bank_c")
FEATURES = ("income", "debt", "age")


def write_banks(root: Path, rows: int = 200, seed: int = 11) -> dict[str, Path]:
    """Three banks' CSVs with the same columns (a label driven by debt/income), made here."""
    rng = np.random.default_rng(seed)
    paths = {}
    for k, bank in enumerate(BANKS):
        income = rng.gamma(4.0, 10.0 + 2 * k, rows)
        debt = rng.gamma(2.0, 8.0, rows)
        age = rng.integers(21, 70, rows)
        hidden = rng.random(rows) < 0.2  # a missing debt is itself a risk signal (native: the trees learn where)
        y = (rng.random(rows) < 1 / (1 + np.exp(-(debt / income * 4 - 2 + 2.5 * hidden)))).astype(int)
        lines = ["id,income,debt,age,default"]
        lines += [f"{bank}-{i},{income[i]:.3f},{'' if hidden[i] else f'{debt[i]:.3f}'},{age[i]},{y[i]}"
                  for i in range(rows)]
        paths[bank] = root / f"{bank}.csv"
        paths[bank].write_text("\n".join(lines) + "\n")
    return paths


def config_toml(root: Path, paths: dict[str, Path], extra: str = "") -> Path:
    parties = "".join(f'\n[[parties]]\nname = "{b}"\npath = "{p}"\n' for b, p in paths.items())
    native = ', missing = [""], impute = "native"'
    features = ", ".join(
        f'{{ name = "{f}", bounds = [0, {200 if f != "age" else 100}]{native if f == "debt" else ""} }}'
        for f in FEATURES)
    text = f"""
[run]
name = "own-gbdt"
seed = 3
store = "sqlite:///{root / 'runs.db'}"
report_dir = "{root / 'reports'}"

[model]
kind = "gbdt"
n_trees = 5
max_depth = 3
n_bins = 16
learning_rate = 0.3

[schema]
id = "id"
label = "default"
features = [{features}]
{parties}
{extra}
"""
    path = root / "run.toml"
    path.write_text(text)
    return path


def test_sampan_run_trains_gbdt_on_own_csvs_registers_reports_and_scores(tmp_path: Path) -> None:
    from sampan.cli import app

    paths = write_banks(tmp_path)
    result = CliRunner().invoke(app, ["run", str(config_toml(tmp_path, paths))], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    try:
        (run,) = store.list_runs()
        assert run.status == "completed" and run.info["trees"] >= 1
        registered = store.get_model("own-gbdt")
    finally:
        store.close()
    model = registered.meta["model"]
    assert model["kind"] == "gbdt" and model["missing_bins"]
    assert abs(sum(model["importance"].values()) - 1) < 1e-9 and set(model["importance"]) <= set(FEATURES)
    assert any(any(tree["missing_left"]) for tree in model["trees"])  # NaN debt learned to go the risky way
    report = next((tmp_path / "reports").glob("*.html")).read_text()
    assert "Feature importance (gain)" in report
    predictor = sampan.load_model("own-gbdt", store=f"sqlite:///{tmp_path / 'runs.db'}")
    p = predictor.predict_proba({"income": [20.0, 60.0, 60.0], "debt": [40.0, 2.0, np.nan], "age": [30, 50, 50]})
    p = p[:, 1]
    assert p.shape == (3,) and p[0] > p[1] and p[2] > p[1]  # high debt/income and an unknown debt score riskier
