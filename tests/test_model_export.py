"""The `sampan-model` v1 export (docs/model_format.md), re-scored OUTSIDE Sampan: the reference scorer below reads
only the documented JSON with numpy and json (it imports nothing from sampan) and gets Sampan's PDs (<= 1e-9)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _scoring_models import IMPUTED, NATIVE, train_models
from typer.testing import CliRunner


# --- the reference scorer: numpy + json only, written from docs/model_format.md -----------------------------
def reference_encode(doc: dict, rows: list[dict]) -> np.ndarray:
    """Rows (column -> text or number) -> the model matrix, per the document's `encoding` section."""
    enc = doc["encoding"]
    markers = set(enc["missing_markers"])

    def is_missing(v: object) -> bool:
        return v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip().lower() in markers

    columns = []
    for spec in enc["inputs"]:
        if spec["type"] == "category":
            for category in spec["categories"]:
                columns.append([1.0 if (enc["missing_category"] if is_missing(r.get(spec["name"])) else
                                        str(r[spec["name"]])) == category else 0.0 for r in rows])
        elif spec["type"] == "missing_indicator":
            columns.append([1.0 if is_missing(r.get(spec["of"])) else 0.0 for r in rows])
        else:
            def number(v: object) -> float:
                text = str(v).strip().lower()
                return 1.0 if text == "true" else 0.0 if text == "false" else float(text)
            columns.append([np.nan if is_missing(r.get(spec["name"])) else number(r[spec["name"]]) for r in rows])
    X = np.array(columns, dtype=np.float64).T
    fill = np.array([np.nan if v is None else v for v in enc["impute"]], dtype=np.float64)
    X = np.where(np.isnan(X) & ~np.isnan(fill), fill, X)
    if enc["standardise"] is not None:
        X = (X - np.array(enc["standardise"]["mean"])) / np.array(enc["standardise"]["scale"])
    return X


def reference_logits(doc: dict, X: np.ndarray) -> np.ndarray:
    part = doc["model"]
    if part["kind"] == "logistic":
        return X @ np.array(part["weights"]) + part["intercept"]
    if part["kind"] == "mlp":
        h = X
        for layer in part["layers"]:
            h = h @ np.array(layer["weights"]) + np.array(layer["bias"])
            h = np.maximum(h, 0.0) if layer["activation"] == "relu" else h
        return h[:, 0]
    out = np.full(len(X), part["base_score"])
    for tree in part["trees"]:
        for i, x in enumerate(X):
            node = 0
            while tree["left"][node] >= 0:
                v = x[tree["feature"][node]]
                left = tree["missing_left"][node] if np.isnan(v) else v <= tree["threshold"][node]
                node = tree["left"][node] if left else tree["right"][node]
            out[i] += tree["value"][node]
    return out


def reference_pd(doc: dict, rows: list[dict]) -> np.ndarray:
    assert doc["format"] == "sampan-model" and doc["format_version"] == 1 and doc["link"] == "logistic"
    return 1.0 / (1.0 + np.exp(-reference_logits(doc, reference_encode(doc, rows))))


# --- tests ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return train_models(tmp_path_factory)


def _export(trained: dict, name: str, out: Path, *extra: str) -> dict:
    from sampan.cli.registry import models_app

    result = CliRunner().invoke(models_app, ["export", name, "--out", str(out), "--store", trained["store"], *extra])
    assert result.exit_code == 0, result.output
    return json.loads((out / f"{name}-v1.model.json").read_text())


@pytest.mark.parametrize("name", ["lr", "mlp", "trees"])
def test_an_export_rescored_outside_sampan_gives_the_same_pds(trained: dict, name: str, tmp_path: Path) -> None:
    from sampan.runtime.scorers import load_scorer
    from sampan.runtime.store import Store

    doc = _export(trained, name, tmp_path)
    rows = [dict(r) for r in trained["rows"][:120]]
    rows[5][IMPUTED] = "?"  # missing values: imputed (lr, mlp) or routed natively (trees), as training did
    rows[6][NATIVE] = ""
    rows[7][IMPUTED] = None
    sampan_pd = [r.pd for r in load_scorer(Store.open(trained["store"]), name).score(rows)]
    np.testing.assert_allclose(reference_pd(doc, rows), sampan_pd, rtol=0, atol=1e-9)


def test_the_document_says_what_it_is(trained: dict, tmp_path: Path) -> None:
    doc = _export(trained, "mlp", tmp_path)
    assert doc["name"] == "mlp" and doc["version"] == 1 and doc["points"] == {"base": 600.0, "base_odds": 50.0,
                                                                              "pdo": 20.0}
    kinds = {spec["type"] for spec in doc["encoding"]["inputs"]}
    assert kinds == {"numeric", "category", "missing_indicator"}  # the mlp run used impute = "indicator"
    assert len(doc["encoding"]["features"]) == len(doc["encoding"]["impute"]) == len(doc["encoding"]["standardise"]
                                                                                      ["mean"])
    assert (tmp_path / "mlp-v1.npz").exists()  # the registry arrays are still exported beside it


def test_a_vertical_part_or_an_empty_entry_exports_no_scoring_document(tmp_path: Path) -> None:
    from sampan.cli.registry import models_app
    from sampan.runtime.store import Store

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = Store.open(url)
    run_id = store.create_run(name="m", workflow="vertical", seed=1, config={"run": {"name": "m"}}, total_rounds=1)
    store.register_model("v:bank", run_id, {"weights": np.zeros(2)}, {"label_holder": "bank"})
    result = CliRunner().invoke(models_app, ["export", "v:bank", "--out", str(tmp_path / "o"), "--store", url])
    assert result.exit_code == 0, result.output
    assert not list((tmp_path / "o").glob("*.model.json"))
    assert "parts stay with their parties" in " ".join(result.output.split())
