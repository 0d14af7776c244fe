"""A benchmark vertical job's split of the aligned rows (`sampan.web.bench_config.vertical_fractions`): Sampan's own
test and validation rows are as few as its rules need, so training keeps the rest. Before: 20% test + 15% validation
took 35% of German credit's 600 aligned rows, and a 24-column party's job failed (90 validation rows, fewer than one
96-row validation batch). German credit from ../shared/data, the benchmark's own draw for seed 1."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sampan.verify.api import PartyRegistration, ProjectCreate, TableData, TaskSpec
from sampan.vertical.rows import MIN_EVALUATION_ROWS
from sampan.vertical.secure_lr import min_batch_rows
from sampan.web.bench_api import SampanBackend
from sampan.web.bench_config import vertical_fractions

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


def _spec(widths: tuple[int, int]) -> TaskSpec:
    features = {"bank": [f"a{i}" for i in range(widths[0])], "bureau": [f"b{i}" for i in range(widths[1])]}
    return TaskSpec(kind="vertical", label="y", id_column="id", rounds=10, features=features)


def _write(folder: Path, rows: dict[str, int]) -> None:
    for party, n in rows.items():
        with open(folder / f"{party}.csv", "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["id", "x"])
            out.writerows([[f"{party}-{i}", i] for i in range(n)])


@pytest.mark.parametrize("widths", [(6, 6), (14, 15), (23, 24)])
def test_small_tables_keep_their_rows_for_training(tmp_path: Path, widths: tuple[int, int]) -> None:
    _write(tmp_path, {"bank": 675, "bureau": 675})
    fractions = vertical_fractions(_spec(widths), tmp_path)
    test, val = fractions["test_fraction"], fractions["val_fraction"]
    need = min_batch_rows(max(widths) + 1)
    for aligned in (600, 520):  # the benchmark's intersection, and one at 77% of the smaller table
        assert round(aligned * test) >= MIN_EVALUATION_ROWS
        assert round(aligned * val) >= need
    assert test < 0.2 and test + val < 0.35  # Sampan alone: 0.2 + 0.15


def test_large_tables_and_missing_ones(tmp_path: Path) -> None:
    _write(tmp_path, {"bank": 20_000, "bureau": 25_000})
    assert vertical_fractions(_spec((10, 10)), tmp_path) == {"test_fraction": 0.05, "val_fraction": 0.05}
    assert vertical_fractions(_spec((10, 10)), tmp_path / "none") == {}  # no tables: Sampan's defaults


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[SampanBackend]:
    backend = SampanBackend(tmp_path)
    yield backend
    backend.close()


@needs_data
def test_wide_german_job_trains_and_reaches_the_pooled_floor(backend: SampanBackend) -> None:
    from sampan.verify import datasets as ds
    from sampan.verify.catalogue.data import VERTICAL_PARTIES, make_bench_data

    data = make_bench_data(1, "german", SHARED)  # seed 1 draws a 24-column feature holder
    v, t = data.vertical, data.table
    assert max(len(v.label_columns), len(v.feature_columns)) >= 23
    bank, bureau = VERTICAL_PARTIES
    project = backend.create_project(ProjectCreate(name="v")).project_id
    backend.register_party(project, PartyRegistration(name=bank, role="label_holder", operated_by="platform", data=(
        TableData(**ds.table_data(t, v.label_rows, v.label_columns, ids=True)))))
    backend.register_party(project, PartyRegistration(name=bureau, role="feature_holder", operated_by="platform", data=(
        TableData(**ds.table_data(t, v.feature_rows, v.feature_columns, label=False, ids=True)))))
    spec = TaskSpec(kind="vertical", label=ds.LABEL, id_column=ds.ID, rounds=10, learning_rate=0.5, batch_size=64,
                    features={bank: list(v.label_columns), bureau: list(v.feature_columns)}, seed=1, timeout_s=300)
    job = backend.wait(backend.submit_job(project, spec).job_id, 300)
    assert job.state == "succeeded", job.error
    export = backend.model(job.job_id)
    X = t.cols([f.split(":", 1)[1] for f in export.features])[data.holdout]
    assert export.standardisation is not None
    z = (X - np.asarray(export.standardisation.mean)) / np.asarray(export.standardisation.scale)
    auc = ds.auc(t.y[data.holdout], 1 / (1 + np.exp(-(z @ np.asarray(export.coefficients) + export.intercept))))
    pooled = data.vertical_baseline.auc
    assert math.isfinite(auc) and auc >= pooled - 0.02, (auc, pooled)  # auc_margin_vertical
    assert backend.results(job.job_id).metrics["intersection_size"] == len(v.intersection)


@pytest.mark.parametrize("widths", [(20, 20), (21, 3), (3, 21), (15, 16)])
def test_vertical_batch_counts_the_label_holders_intercept(tmp_path: Path, widths: tuple[int, int]) -> None:
    """Before: 4 x the widest party's features, so a label holder as wide as (or wider than) its partner was one
    column short (its intercept) and Sampan refused the job as invalid (German seeds 11, 14, 15, 18 of 20)."""
    from sampan.web.bench_jobs import PartyEntry, build_config

    spec = _spec(widths)
    _write(tmp_path, {"bank": 300, "bureau": 300})
    parties = {"bank": PartyEntry("bank", "label_holder", "platform"),
               "bureau": PartyEntry("bureau", "feature_holder", "platform")}
    config = build_config(spec, tmp_path, parties, seed=1)  # validates the secure LR settings as `sampan run` does
    assert config.vertical.lr.batch_size >= min_batch_rows(max(widths) + 1)
