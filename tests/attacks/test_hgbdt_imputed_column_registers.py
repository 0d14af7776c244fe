"""R13-SCO-11 (review, issue 13): a horizontal GBDT whose schema imputes a column (mean/median/indicator, the
schema's own policy, accepted by the config) trains every tree and then fails on the final `evaluate` with
"party ...: ValueError: missing values in [...] and no imputation value for them in the request": the GBDT
workflow (`horizontal/gbdt_workflow.py`) runs no imputation step and puts no fill values in its payload, so no
model is registered, exported or scored (and under `[privacy.gbdt]` the whole budget is spent for nothing).
"""

from __future__ import annotations

from pathlib import Path

from _scoring_models import IMPUTED, _features, _with_holes

import sampan
from sampan.data import make_sme_consortium


def test_a_gbdt_with_a_mean_imputed_column_registers_a_scoring_model(tmp_path: Path) -> None:
    consortium = make_sme_consortium(n_smes=300, seed=11)
    paths = consortium.write_csv(tmp_path)
    schema = consortium.schema_for(next(iter(paths)))
    for path in paths.values():
        _with_holes(path, IMPUTED, 7)
    config = {"schema": {"id": schema.id_column, "label": schema.label_column,
                         "features": _features(schema, {IMPUTED: "mean"})},
              "parties": [{"name": n, "path": str(p)} for n, p in paths.items()],
              "run": {"name": "trees-mean", "seed": 4, "store": f"sqlite:///{tmp_path / 'runs.db'}"},
              "model": {"kind": "gbdt", "n_trees": 2, "max_depth": 2}}
    finished = sampan.run(config)
    assert finished.model_name == "trees-mean"
    # the trees route a missing cell of that column at scoring as they did in training (no fill value needed)
    import csv

    from sampan.runtime.scorers import load_scorer
    from sampan.runtime.store import Store

    with open(next(iter(paths.values())), newline="") as handle:
        row = {k: v for k, v in next(csv.DictReader(handle)).items() if k != schema.label_column}
    (result,) = load_scorer(Store.open(config["run"]["store"]), "trees-mean").score([{**row, IMPUTED: "?"}])
    assert 0.0 < result.pd < 1.0
