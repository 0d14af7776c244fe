"""Scoring new applicants at the bank: throughput of `sampan score` (file in, file out), the in-process `Scorer`
with reason codes, the bare model, one applicant at a time, and the ONNX export under onnxruntime, side by side.

Run from the repository root:  .venv/bin/python bench/score_bench.py [--rows 100000]
Three horizontal models (LR, MLP 32, GBDT 50 trees depth 4) are trained on the built-in SME consortium
(3 banks, 12,000 SMEs); the applicants are a bank's rows without the label, repeated to --rows, as CSV text.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import sampan
from sampan.cli.score import ScoreWriter, read_chunks
from sampan.data import make_sme_consortium
from sampan.models.onnx_export import to_onnx
from sampan.runtime.scorers import load_scorer, scoring_document
from sampan.runtime.store import Store

MODELS = {"lr": {"kind": "logistic"}, "mlp": {"kind": "mlp", "hidden": [32]},
          "gbdt": {"kind": "gbdt", "n_trees": 50, "max_depth": 4}}


def train(tmp: Path) -> tuple[str, Path, list[dict[str, str]]]:
    consortium = make_sme_consortium(n_smes=12000, seed=3)
    paths = consortium.write_csv(tmp)
    schema = consortium.schema_for(next(iter(paths)))
    store = f"sqlite:///{tmp / 'runs.db'}"
    features = [{"name": c.name, "kind": c.kind, **({"categories": list(c.categories)} if c.categories else {})}
                for c in schema.features]
    for name, model in MODELS.items():
        config = {"run": {"name": name, "rounds": 5, "seed": 1, "store": store, "report_dir": str(tmp / "r")},
                  "model": model, "schema": {"id": schema.id_column, "label": schema.label_column,
                                             "features": features},
                  "parties": [{"name": n, "path": str(p)} for n, p in paths.items()]}
        if model["kind"] != "gbdt":
            config["training"] = {"local_epochs": 1, "batch_size": 64, "learning_rate": 0.1}
        sampan.run(config)
    with open(next(iter(paths.values())), newline="") as handle:
        rows = [{k: v for k, v in r.items() if k != schema.label_column} for r in csv.DictReader(handle)]
    return store, tmp, rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        store_url, tmp, rows = train(Path(folder))
        applicants = tmp / "applicants.csv"
        with open(applicants, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows[k % len(rows)] for k in range(args.rows))
        store = Store.open(store_url)
        print(f"{args.rows:,} applicants (CSV text, {len(rows[0]) - 1} columns), this 2-core VM, shared with other "
              "jobs")
        print(f"{'model':6} {'file->file':>12} {'Scorer':>12} {'bare model':>12} {'reasons cost':>13} "
              f"{'ONNX batch':>12} {'1 applicant p50/p99':>22}")
        for name in MODELS:
            scorer = load_scorer(store, name)
            started = time.perf_counter()
            with ScoreWriter(tmp / f"{name}.csv", 4) as out:
                for first, columns in read_chunks(applicants, 5000):
                    out.write([r.as_dict() for r in scorer.score_columns(columns, first_row=first)])
            file_rate = args.rows / (time.perf_counter() - started)
            chunks = list(read_chunks(applicants, 5000))
            started = time.perf_counter()
            for first, columns in chunks:
                scorer.score_columns(columns, first_row=first)
            scorer_rate = args.rows / (time.perf_counter() - started)
            started = time.perf_counter()
            for _, columns in chunks:
                scorer.predictor.default_probability(columns)
            bare_rate = args.rows / (time.perf_counter() - started)
            document = scoring_document(store, store.get_model(name))
            assert document is not None
            session = ort.InferenceSession(to_onnx(document), providers=["CPUExecutionProvider"])
            from dataclasses import replace

            raw = replace(scorer.predictor, scaler={}, native_missing=True)
            matrices = [raw.encode(columns) for _, columns in chunks]
            started = time.perf_counter()
            for X in matrices:
                session.run(["pd"], {"features": X})
            onnx_rate = args.rows / (time.perf_counter() - started)
            latencies = []
            for row in rows[:500]:
                t = time.perf_counter()
                scorer.score([row])
                latencies.append((time.perf_counter() - t) * 1000)
            p50, p99 = statistics.median(latencies), float(np.percentile(latencies, 99))
            print(f"{name:6} {file_rate:10,.0f}/s {scorer_rate:10,.0f}/s {bare_rate:10,.0f}/s "
                  f"{bare_rate / scorer_rate:12.1f}x {onnx_rate:10,.0f}/s {p50:10.2f} / {p99:.2f} ms")
        print("file->file: read CSV in 5,000-row chunks, score, write CSV; Scorer: PD, points, decision, reasons; "
              "bare model: encoding + PD only; ONNX batch: the exported graph on the encoded matrix.")


if __name__ == "__main__":
    main()
