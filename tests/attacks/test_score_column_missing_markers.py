"""R13-SCO-19 (review, issue 13): a column's own missing marker is applied to EVERY column at scoring.

`runtime/scorers.py` `training_markers` gathers the table default AND every column's `missing` list into one set,
and `Scorer.from_registered` adds it to the predictor's table-wide markers (the export's `encoding.missing_markers`
likewise, docs/model_format.md). A bank that declares `missing = ["0"]` on one column (a common "0 = unknown"
code) trained with "0" meaning missing in that column only; at scoring, "0" in any other column (zero past
delinquencies, zero employees) is read as missing: the LR refuses the applicant ("no imputation value"), an imputed
column is silently replaced by its mean, a GBDT silently routes it down the missing branch — scores that differ
from the training's encoding of the same row.
"""

from __future__ import annotations

import csv
from pathlib import Path

from _scoring_models import _features

import sampan
from sampan.data import make_sme_consortium
from sampan.runtime.scorers import load_scorer
from sampan.runtime.store import Store


def test_a_columns_marker_stays_with_its_column(tmp_path: Path) -> None:
    consortium = make_sme_consortium(n_smes=300, seed=11)
    paths = consortium.write_csv(tmp_path)
    schema = consortium.schema_for(next(iter(paths)))
    features = _features(schema, {})
    for spec in features:
        if spec["name"] == "credit_utilisation":
            spec.update(missing=["0"], impute="mean")
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    sampan.run({"schema": {"id": schema.id_column, "label": schema.label_column, "features": features},
                "parties": [{"name": n, "path": str(p)} for n, p in paths.items()],
                "run": {"name": "marker", "rounds": 1, "seed": 4, "store": store}, "model": {"kind": "logistic"},
                "training": {"local_epochs": 1, "batch_size": 64, "learning_rate": 0.1}})
    with open(next(iter(paths.values())), newline="") as handle:
        row = {k: v for k, v in next(csv.DictReader(handle)).items() if k != schema.label_column}
    scorer = load_scorer(Store.open(store), "marker")
    (result,) = scorer.score([{**row, "past_delinquencies": "0"}])  # zero delinquencies: a value, not a gap
    assert result.pd == scorer.score([{**row, "past_delinquencies": "0.0"}])[0].pd
