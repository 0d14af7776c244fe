"""Review (issue 13) of the drift release's accounting (`sampan monitor drift`, `sampan.runtime.monitoring`).

R13-DR-1: the drift release bins the bank's TRAINING rows (`--reference`, the run's DP unit) and its current
population, and under DP charges one Gaussian release to a ledger file named on the command line (a fresh file
gets its own `--epsilon` budget, 10 by default) — never the run's ledger, nor the bank's agent ledger that its
training charged. The release is logged on the model's run (`monitoring_drift`, with its noise multiplier), yet
the run's receipt and the validation pack's privacy section (epsilon spent per party, what each party
revealed) say nothing of it: a validator reads the run's epsilon as the whole privacy loss of those training
rows, and, without DP, the pack does not list the exact counts that left the bank at all.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from sampan.cli import app
from sampan.config import parse_config
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store

FEATURES = ["x1", "x2", "x3"]


def test_the_pack_privacy_section_lists_the_drift_release(tmp_path: Path) -> None:
    from test_monitoring import write_csv

    from sampan.runtime.validation_pack import build_validation_pack

    parties = [{"name": f"bank_{i}", "path": str(write_csv(tmp_path / f"bank_{i}.csv", 80, i))} for i in range(3)]
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    start_run(parse_config({"run": {"name": "champion", "rounds": 1, "seed": 5, "report_dir": str(tmp_path / "r")},
                            "schema": {"id": "id", "label": "y", "features": FEATURES}, "parties": parties,
                            "training": {"learning_rate": 0.2, "batch_size": 32}}), store)
    current = write_csv(tmp_path / "current.csv", 60, 9, shift=1.0, label=False)
    result = CliRunner().invoke(app, ["monitor", "drift", "--model", "champion", "--reference", parties[0]["path"],
                                      "--data", str(current), "--party", "bank_0", "--noise", "1.0",
                                      "--ledger", str(tmp_path / "fresh.json"), "--store", str(store.engine.url)])
    assert result.exit_code == 0, result.output
    privacy = next(s for s in build_validation_pack(store, "champion").sections if s.title == "Privacy receipt")
    text = " ".join([*privacy.paragraphs, *(" ".join(map(str, r)) for t in privacy.tables for r in t.rows)])
    assert "drift" in text.lower(), "the privacy receipt omits the drift release made from the training rows"
