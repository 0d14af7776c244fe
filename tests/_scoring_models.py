"""Three small horizontal models (LR, MLP, GBDT) trained on CSVs with missing cells, for the scoring/export tests.

Not a test module: `test_score_applicants`, `test_model_export` and `test_onnx_export` each train once per module.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

import sampan
from sampan.data import make_sme_consortium

IMPUTED = "credit_utilisation"   # declared missing = ["?", ""], impute = "mean"
NATIVE = "debt_to_revenue"       # GBDT run: impute = "native"


def _features(schema: object, policy: dict[str, str]) -> list[dict]:
    out = []
    for c in schema.features:  # type: ignore[attr-defined]
        spec: dict = {"name": c.name, "kind": c.kind}
        if c.categories:
            spec["categories"] = list(c.categories)
        if c.name in policy:
            spec.update(missing=["?", ""], impute=policy[c.name])
        out.append(spec)
    return out


def _with_holes(path: Path, column: str, every: int) -> None:
    """Blank out every `every`-th value of `column` with '?' (the party's file has missing cells)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for k, row in enumerate(rows):
        if k % every == 3:
            row[column] = "?"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def train_models(factory: pytest.TempPathFactory) -> dict:
    """Train "lr", "mlp" and "trees" on three banks' CSVs (with '?' cells), once per test process (the three
    scoring/export test modules share them); return a fresh folder, the store, the applicants and their rows."""
    shared = factory.getbasetemp() / "scoring-models"
    consortium = make_sme_consortium(n_smes=900, seed=11)
    schema = consortium.schema_for(sorted(consortium.schemas)[0])
    if not (shared / "applicants.csv").exists():
        _train(shared, consortium)
    with open(shared / "rows.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {"tmp": factory.mktemp("scoring"), "store": f"sqlite:///{shared / 'runs.db'}",
            "applicants": shared / "applicants.csv", "rows": rows, "schema": schema}


def _train(tmp: Path, consortium: Any) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    paths = consortium.write_csv(tmp)
    schema = consortium.schema_for(next(iter(paths)))
    for path in paths.values():
        _with_holes(path, IMPUTED, 7)
        _with_holes(path, NATIVE, 9)
    store = f"sqlite:///{tmp / 'runs.db'}"
    base = {"schema": {"id": schema.id_column, "label": schema.label_column},
            "parties": [{"name": n, "path": str(p)} for n, p in paths.items()]}
    for name, model, policy in (("lr", {"kind": "logistic"}, {IMPUTED: "mean", NATIVE: "mean"}),
                                ("mlp", {"kind": "mlp", "hidden": [8]}, {IMPUTED: "indicator", NATIVE: "mean"}),
                                ("trees", {"kind": "gbdt", "n_trees": 4, "max_depth": 3},
                                 {IMPUTED: "native", NATIVE: "native"})):
        config = {**base, "run": {"name": name, "rounds": 2, "seed": 4, "store": store, "report_dir": str(tmp / "r")},
                  "model": model}
        config["schema"] = {**base["schema"], "features": _features(schema, policy)}
        if model["kind"] != "gbdt":
            config["training"] = {"local_epochs": 1, "batch_size": 64, "learning_rate": 0.1}
        sampan.run(config)
    with open(next(iter(paths.values())), newline="") as handle:
        rows = list(csv.DictReader(handle))
    (tmp / "rows.csv").write_bytes(next(iter(paths.values())).read_bytes())
    with open(tmp / "applicants.partial", "w", newline="") as handle:  # one bank's rows without the label
        writer = csv.DictWriter(handle, fieldnames=[k for k in rows[0] if k != schema.label_column])
        writer.writeheader()
        writer.writerows({k: v for k, v in r.items() if k != schema.label_column} for r in rows)
    (tmp / "applicants.partial").replace(tmp / "applicants.csv")
