"""Review (issue 13) of the validation pack's output path (`sampan.runtime.validation_pack.write_validation_pack`).

R13-PACK-1: the pack's file name is the registered model's name with only ':' replaced
(`Path(out_dir) / f"{model}-v{version}"`), and a model name is a run name, which nothing constrains (in a
deployment the run config comes from the coordinator's operator). A model named "../../x" writes
`<out>/../../x-v1.html` (and .pdf): `sampan models pack` writes outside the folder it was given.
"""

from __future__ import annotations

from pathlib import Path

from sampan.config import parse_config
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store
from sampan.runtime.validation_pack import write_validation_pack

FEATURES = ["x1", "x2", "x3"]


def test_the_pack_stays_in_its_folder(tmp_path: Path) -> None:
    from test_monitoring import write_csv

    parties = [{"name": f"bank_{i}", "path": str(write_csv(tmp_path / f"bank_{i}.csv", 60, i))} for i in range(3)]
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    start_run(parse_config({"run": {"name": "../escaped", "rounds": 1, "seed": 5, "report_dir": str(tmp_path / "r")},
                            "schema": {"id": "id", "label": "y", "features": FEATURES}, "parties": parties,
                            "training": {"learning_rate": 0.2, "batch_size": 32}}), store)
    out = tmp_path / "packs" / "inner"
    try:
        paths = write_validation_pack(store, "../escaped", out, pdf=False)  # the run's model
    except ValueError:
        return  # refusing such a name is fine
    assert all(p.resolve().is_relative_to(out.resolve()) for p in paths), paths
