"""The canary plan of S-MIA / S-DP-AUDIT-ONE-RUN: within the API's column limit, names that look like features and
clash with none, coins near one half, canary columns placed before the label with zeros for the other parties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sampan.verify.api import MAX_COLUMNS
from sampan.verify.catalogue.base import Context
from sampan.verify.catalogue.canaries import CANARIES, plan_canary_columns, with_columns
from sampan.verify.catalogue.data import make_bench_data

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


def _ctx(seed: int) -> Context:
    return Context(api=None, info={}, data=make_bench_data(seed, "german", SHARED), profile="standard")  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [1, 4])
def test_plan_fits_the_column_limit_and_looks_like_features(seed: int) -> None:
    ctx = _ctx(seed)
    plan = plan_canary_columns(ctx, rng=np.random.default_rng(seed))  # seeded: a reproducible test
    m = len(plan.names)
    assert m == min(CANARIES, MAX_COLUMNS - 1 - len(ctx.data.columns)) and m >= 400
    assert len(set(plan.names)) == m and not set(plan.names) & set(ctx.data.table.columns)
    assert all(n.startswith("attr_") and len(n) == 11 for n in plan.names)
    assert set(plan.base_rows) <= set(ctx.data.parts[-1].tolist())  # ordinary rows of the verifier's party
    assert 0.4 < plan.included.mean() < 0.6 and set(np.unique(plan.labels)) <= {0.0, 1.0}
    record = plan.record()
    assert len(record["included"]) == m and record["columns"] == plan.names


def test_canary_columns_go_before_the_label() -> None:
    data = {"columns": ["a", "b", "label"], "rows": [[1.0, 2.0, 1.0], [3.0, 4.0, 0.0]]}
    out = with_columns(data, ["attr_000001", "attr_000002"])
    assert out["columns"] == ["a", "b", "attr_000001", "attr_000002", "label"]
    assert out["rows"] == [[1.0, 2.0, 0.0, 0.0, 1.0], [3.0, 4.0, 0.0, 0.0, 0.0]]
