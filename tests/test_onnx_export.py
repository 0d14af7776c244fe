"""`sampan models export NAME --onnx`: the ONNX graph of a horizontal LR, MLP or GBDT, run by onnxruntime, gives
Sampan's PDs (<= 1e-5; LR and MLP are double precision end to end), missing values included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _scoring_models import IMPUTED, NATIVE, train_models
from typer.testing import CliRunner

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return train_models(tmp_path_factory)


@pytest.mark.parametrize("name", ["lr", "mlp", "trees"])
def test_onnxruntime_scores_like_sampan(trained: dict, name: str, tmp_path: Path) -> None:
    from sampan.cli.registry import models_app
    from sampan.runtime.scorers import load_scorer
    from sampan.runtime.store import Store

    result = CliRunner().invoke(models_app, ["export", name, "--onnx", "--out", str(tmp_path),
                                             "--store", trained["store"]])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / f"{name}-v1.model.json").read_text())
    rows = [dict(r) for r in trained["rows"][:200]]
    rows[3][IMPUTED] = "?"
    rows[4][NATIVE] = ""
    scorer = load_scorer(Store.open(trained["store"]), name)
    expected = np.array([r.pd for r in scorer.score(rows)])
    # the graph's input: the encoded matrix in the document's feature order, missing cells as NaN (no fill, no
    # standardisation: the graph does both)
    encoder = scorer.predictor
    raw = encoder.encode({k: np.array([r.get(k) for r in rows], dtype=object) for k in rows[0]}) \
        if name == "trees" else _unscaled(encoder, rows)
    assert list(doc["encoding"]["features"]) == encoder.feature_names
    session = ort.InferenceSession(str(tmp_path / f"{name}-v1.onnx"), providers=["CPUExecutionProvider"])
    (pd,) = session.run(["pd"], {"features": raw})
    np.testing.assert_allclose(pd[:, 0], expected, rtol=0, atol=1e-5)
    if name != "trees":  # double precision end to end (the tree ensemble operator sums in float32)
        assert np.max(np.abs(pd[:, 0] - expected)) < 1e-12


def _unscaled(predictor: object, rows: list[dict]) -> np.ndarray:
    """The encoded matrix before imputation and standardisation (what a caller of the ONNX graph passes)."""
    from dataclasses import replace

    bare = replace(predictor, scaler={}, native_missing=True)  # type: ignore[type-var]
    return bare.encode({k: np.array([r.get(k) for r in rows], dtype=object) for k in rows[0]})
