"""Benchmark datasets: attribute draws keep one-hot groups whole, splits partition the rows, the vertical split
has a known intersection, and the pooled baseline LR is a real fit (Newton steps reach the optimum)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sampan.verify import datasets as ds
from sampan.verify.catalogue.data import HORIZONTAL_SHARES, make_bench_data
from sampan.verify.catalogue.registry import all_tests
from sampan.verify.catalogue.registry import tests_for as profile_tests
from sampan.verify.thresholds import THRESHOLDS

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


@needs_data
def test_draws_and_splits() -> None:
    table = ds.load_benchmark("german", SHARED)
    cols = ds.draw_columns(table, np.random.default_rng(1), 5)
    groups = [g for g in table.groups.values() if set(g) & set(cols)]
    assert len(groups) == 5 and all(set(g) <= set(cols) for g in groups)  # one-hot attributes stay whole
    data = make_bench_data(3, "german", SHARED)
    all_rows = np.sort(np.concatenate([data.train, data.holdout]))
    assert np.array_equal(all_rows, np.arange(1000))
    assert np.array_equal(np.sort(np.concatenate(data.parts)), data.train)
    assert np.array_equal(np.sort(np.concatenate(data.noniid_parts)), data.train)
    sizes = np.array([p.size for p in data.parts]) / data.train.size
    assert np.allclose(sizes, HORIZONTAL_SHARES, atol=0.01)
    v = data.vertical
    common = set(table.ids[v.label_rows]) & set(table.ids[v.feature_rows])
    assert set(v.intersection) == common and 0 < len(common) < data.train.size
    assert set(v.label_columns).isdisjoint(v.feature_columns)
    td = ds.table_data(table, v.label_rows[:3], v.label_columns, ids=True)
    assert td["columns"][0] == "id" and td["columns"][-1] == "label" and isinstance(td["rows"][0][0], str)
    assert 0.65 < data.baseline.auc < 0.9 and 0.6 < data.vertical_baseline.auc < 0.9


def test_fit_lr_reaches_the_optimum() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 4))
    y = (rng.random(400) < 1 / (1 + np.exp(-(X @ [1.0, -2.0, 0.5, 0.0] + 0.3)))).astype(float)
    coef, b = ds.fit_lr(X, y, l2=0.0)
    p = ds.predict_lr(X, coef, b)
    assert np.abs(X.T @ (p - y)).max() < 1e-8 and abs(float(np.sum(p - y))) < 1e-8  # gradient is zero


def test_bad_requests_name_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ds.DatasetError, match="unknown benchmark dataset"):
        ds.load_benchmark("mnist", SHARED)
    with pytest.raises(ds.DatasetError, match="cannot split"):
        ds.horizontal_split(np.arange(3), 2, np.random.default_rng(0))


def test_catalogue_is_consistent() -> None:
    tests = all_tests()
    assert len({t.id for t in tests}) == len(tests)
    for t in tests:
        assert t.id[0] in "FPS" and t.pass_rule and t.profiles <= {"quick", "standard", "full"}
        assert all(k in THRESHOLDS for k in t.thresholds), t.id
    quick = {t.id for t in profile_tests("quick")}
    standard = {t.id for t in profile_tests("standard")}
    assert quick < standard < {t.id for t in profile_tests("full")}
    assert "P-SCALING" not in standard and {"F-API-VERSION", "S-ACCESS", "S-SECAGG-MASKED"} <= quick
    assert [t.id for t in profile_tests("quick", ["S-TLS"])][:2] == ["S-TLS-NO-CLIENT-CERT", "S-TLS-WRONG-CA"]
