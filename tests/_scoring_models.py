"""Three small horizontal models (LR, MLP, GBDT) trained on CSVs with missing cells, for the scoring/export tests.

Not a test module: `test_score_applicants`, `test_model_export` and `test_onnx_export` each train once per module.
"""

from __future__ import annotations

import csv
from pathlib import Path

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


def train_models(tmp: Path) -> dict:
    """Train "lr", "mlp" and "trees" on three banks' CSVs (with '?' cells); return paths, store and rows."""
    consortium = make_sme_consortium(n_smes=900, seed=11)
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
    applicants = tmp / "applicants.csv"  # one bank's rows without the label: the "new applicants"
    with open(next(iter(paths.values())), newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(applicants, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[k for k in rows[0] if k != schema.label_column])
        writer.writeheader()
        writer.writerows({k: v for k, v in r.items() if k != schema.label_column} for r in rows)
    return {"tmp": tmp, "store": store, "applicants": applicants, "rows": rows, "schema": schema}
