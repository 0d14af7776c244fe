"""A simulation whose config has ``[compute] engine = "ray"``: the runner starts the party engine, runs the
parties' blocks on it, closes it, and the model is the bytes of the same run without the table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")

from sampan.compute import LocalEngine, current_engine  # noqa: E402
from sampan.config import parse_config  # noqa: E402
from sampan.runtime.runner import start_run  # noqa: E402
from sampan.runtime.store import Store  # noqa: E402


@pytest.mark.slow
def test_a_ray_compute_table_runs_the_simulation_on_ray_with_the_same_model(tmp_path: Path) -> None:
    import ray

    base = {"run": {"name": "hgb", "rounds": 1, "seed": 4},
            "model": {"kind": "gbdt", "n_trees": 3, "max_depth": 3, "n_bins": 16},
            "source": {"kind": "consortium", "n_smes": 1200, "n_parties": 2}}
    local = start_run(parse_config(base), Store.open(f"sqlite:///{tmp_path / 'a.db'}"))
    on_ray = start_run(parse_config({**base, "compute": {"engine": "ray", "num_workers": 2}}),
                       Store.open(f"sqlite:///{tmp_path / 'b.db'}"))
    assert not ray.is_initialized() and isinstance(current_engine(), LocalEngine)  # closed after the run
    a, b = local.result.models[0], on_ray.result.models[0]
    assert sorted(a.arrays) == sorted(b.arrays)
    assert all(np.asarray(a.arrays[k]).tobytes() == np.asarray(b.arrays[k]).tobytes() for k in a.arrays)
    assert a.meta["model"] == b.meta["model"] and local.final_metrics == on_ray.final_metrics
