"""The public Python API: sampan.run(config) -> a finished run; sampan.load_model(name).predict_proba(frame)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sampan
from sampan.data import make_sme_consortium
from sampan.data.loaders import load_table


def _config(tmp_path: Path) -> tuple[dict, dict[str, Path], object]:
    consortium = make_sme_consortium(n_smes=1500, seed=3)
    paths = consortium.write_csv(tmp_path)
    schema = consortium.schema_for(next(iter(paths)))
    config = {
        "run": {"name": "api-test", "rounds": 2, "seed": 5, "store": f"sqlite:///{tmp_path / 'runs.db'}",
                "report_dir": str(tmp_path / "reports")},
        "model": {"kind": "logistic"},
        "training": {"local_epochs": 1, "batch_size": 64, "learning_rate": 0.1},
        "schema": {"id": schema.id_column, "label": schema.label_column,
                   "features": [{"name": c.name, "kind": c.kind, **({"categories": list(c.categories)}
                                                                   if c.categories else {})} for c in schema.features]},
        "parties": [{"name": name, "path": str(path)} for name, path in paths.items()],
    }
    return config, paths, schema


def _arrow_table(path: Path, schema: object):  # type: ignore[no-untyped-def]
    """The party's CSV as a pyarrow Table (ids and categories as text, as a loader reads them)."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    text = [schema.id_column] + [c.name for c in schema.features if c.kind == "category"]  # type: ignore[attr-defined]
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in text}))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict, dict[str, Path], object]:
    tmp_path = tmp_path_factory.mktemp("api")
    config, paths, schema = _config(tmp_path)
    finished = sampan.run(config)
    return finished, config, paths, schema


def test_import_sampan_is_light() -> None:
    code = ("import sys, sampan; heavy = sorted(m for m in ('numpy', 'pydantic', 'sqlalchemy', 'grpc', 'pyarrow', "
            "'pandas', 'typer', 'rich') if m in sys.modules); print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"`import sampan` imported {out.stdout.strip()}"


def test_public_names() -> None:
    for name in ("run", "load_model", "RunConfig", "load_config", "Predictor", "SampanError", "ConfigError",
                 "DataError", "PartyError", "BudgetError", "ProtocolError", "StoreError", "CancelledError"):
        assert name in sampan.__all__ and getattr(sampan, name) is not None
    assert isinstance(sampan.__version__, str)
    with pytest.raises(AttributeError):
        sampan.no_such_name  # noqa: B018


def test_run_then_load_model_scores_like_the_registry_model(trained) -> None:
    finished, config, paths, schema = trained
    assert finished.model_name == "api-test" and finished.model_version == 1
    model = sampan.load_model("api-test", store=config["run"]["store"])
    assert model.version == 1 and model.run_id == finished.run_id

    party = next(iter(paths))
    data = load_table(paths[party], schema, party)
    from sampan.models import model_from_config
    from sampan.runtime.store import Store

    entry = Store.open(config["run"]["store"]).get_model("api-test")  # the registry model, scored by hand
    scaler = {k.removeprefix("scaler."): v for k, v in entry.arrays.items() if k.startswith("scaler.")}
    X = (data.X - scaler["mean"]) / scaler["scale"] if "mean" in scaler else data.X
    expected = model_from_config(entry.meta["model"]).predict_proba(entry.arrays["params"], X)

    table = _arrow_table(paths[party], schema)
    proba = model.predict_proba(table)
    assert proba.shape == (table.num_rows, 2)
    np.testing.assert_allclose(proba[:, 1], expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)

    as_dict = {c: table.column(c).to_pylist() for c in reversed(table.column_names)}  # order, extras: no matter
    np.testing.assert_allclose(model.predict_proba(as_dict)[:, 1], expected, rtol=0, atol=1e-12)
    assert set(model.predict(as_dict)) <= {0, 1}


def test_predict_proba_takes_a_pandas_frame(trained) -> None:
    pytest.importorskip("pandas")
    finished, config, paths, schema = trained
    model = sampan.load_model(finished.model_name, store=config["run"]["store"])
    table = _arrow_table(next(iter(paths.values())), schema)
    np.testing.assert_allclose(model.predict_proba(table.to_pandas()), model.predict_proba(table), rtol=0, atol=0)


def test_predict_proba_names_missing_columns_and_unknown_categories(trained) -> None:
    finished, config, paths, schema = trained
    model = sampan.load_model("api-test", store=config["run"]["store"])
    table = _arrow_table(next(iter(paths.values())), schema).slice(0, 20)
    frame = {c: table.column(c).to_pylist() for c in table.column_names}
    numeric = next(c.name for c in schema.features if c.kind == "float")
    with pytest.raises(sampan.DataError, match=f"missing column.*'{numeric}'"):
        model.predict_proba({k: v for k, v in frame.items() if k != numeric})
    category = next(c for c in schema.features if c.kind == "category")
    broken = {k: list(v) for k, v in frame.items()}
    broken[category.name][3] = "space_mining"
    with pytest.raises(sampan.DataError, match=f"column '{category.name}'.*'space_mining'"):
        model.predict_proba(broken)
    broken = {k: list(v) for k, v in frame.items()}
    broken[numeric][4] = float("nan")
    with pytest.raises(sampan.DataError, match=f"column '{numeric}'.*row 4"):
        model.predict_proba(broken)
    with pytest.raises(sampan.DataError, match="DataFrame"):
        model.predict_proba([[1, 2, 3]])


def test_errors_are_sampan_errors(tmp_path: Path) -> None:
    with pytest.raises(sampan.StoreError, match="no model 'nope'"):
        sampan.load_model("nope", store=f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(sampan.ConfigError, match="learning_rat"):
        sampan.run({"training": {"learning_rat": 0.1}, "source": {"kind": "consortium"}},
                   store=f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(sampan.ConfigError):
        sampan.run(tmp_path / "missing.toml")
    with pytest.raises(sampan.ConfigError):
        sampan.run(42)  # type: ignore[arg-type]


def test_a_horizontal_gbdt_model_scores_too(tmp_path: Path) -> None:
    config, paths, schema = _config(tmp_path)
    config["run"]["name"] = "api-gbdt"
    config["model"] = {"kind": "gbdt", "n_trees": 3, "max_depth": 2}
    config.pop("training")
    finished = sampan.run(config)
    model = sampan.load_model("api-gbdt", store=config["run"]["store"])
    party = next(iter(paths))
    data = load_table(paths[party], schema, party)
    from sampan.horizontal.gbdt import predict_gbdt_payload
    from sampan.runtime.store import Store

    entry = Store.open(config["run"]["store"]).get_model("api-gbdt")
    expected = predict_gbdt_payload(entry.meta["model"], entry.arrays, data.X)
    np.testing.assert_allclose(model.predict_proba(_arrow_table(paths[party], schema))[:, 1], expected, atol=1e-12)
    assert finished.model_name == "api-gbdt"


def test_run_accepts_a_runconfig(tmp_path: Path) -> None:
    config, _, _ = _config(tmp_path)
    finished = sampan.run(sampan.RunConfig.model_validate(config))
    assert finished.final_metrics.get("auc") is not None and finished.model_name == "api-test"
