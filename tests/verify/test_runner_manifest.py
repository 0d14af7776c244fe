"""The manifest records what decides an evaluation (seed, drawn columns, splits, thresholds, versions), and
`reproduce` from a saved manifest gives the same draws; changed data is refused with the field named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sampan.errors import ConfigError
from sampan.verify.catalogue.data import make_bench_data
from sampan.verify.manifest import build_manifest, load_manifest, reproduce, save_manifest
from sampan.verify.thresholds import THRESHOLDS

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


def test_same_seed_same_draws_other_seed_other_columns() -> None:
    a, b, c = (make_bench_data(s, "german", SHARED) for s in (5, 5, 6))
    assert a.draws() == b.draws() and a.columns == b.columns
    assert np.array_equal(a.holdout, b.holdout) and a.vertical.intersection == b.vertical.intersection
    assert a.columns != c.columns  # CAICT: columns drawn per evaluation, so a platform cannot precompute


def test_save_load_reproduce(tmp_path: Path) -> None:
    data = make_bench_data(123, "german", SHARED)
    info = {"platform": "weak", "platform_version": "1", "api_version": "1.0", "capabilities": []}
    manifest = build_manifest(profile="quick", seed=123, data=data, info=info, tests=["F-API-VERSION"],
                              target_url="http://127.0.0.1:1")
    assert manifest["versions"]["platform"]["platform"] == "weak"
    assert {t["key"] for t in manifest["thresholds"]} == set(THRESHOLDS)
    path = save_manifest(manifest, tmp_path / "manifest.json")
    loaded = load_manifest(path)
    again = reproduce(loaded, SHARED)
    assert again.columns == data.columns and np.array_equal(again.train, data.train)
    # a results file carrying the manifest works too
    (tmp_path / "results.json").write_text(json.dumps({"manifest": manifest}))
    assert load_manifest(tmp_path / "results.json")["seed"] == 123


def test_changed_draws_and_bad_files_are_refused(tmp_path: Path) -> None:
    data = make_bench_data(9, "german", SHARED)
    manifest = build_manifest(profile="quick", seed=9, data=data, info=None, tests=[], target_url="x")
    manifest["draws"]["columns"] = manifest["draws"]["columns"][:-1]
    with pytest.raises(ConfigError, match="columns"):
        reproduce(manifest, SHARED)
    with pytest.raises(ConfigError, match="no such file"):
        load_manifest(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"seed": "x", "profile": "quick", "draws": {}}')
    with pytest.raises(ConfigError, match="seed"):
        load_manifest(tmp_path / "bad.json")
