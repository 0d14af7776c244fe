"""Review (issue 13) of backtests and challengers (`sampan.runtime.backtest`): "the audit log holds aggregates
only (metrics, counts per band), never an applicant's row, id or PD".

R13-MON-1: nothing bounds the population an aggregate is taken over. A backtest or challenger on one applicant
logs that applicant's outcome (`now`: n 1, positive_rate 1.0) and, for the challenger, its exact PD difference
between the two models, on the training run's audit log; `monitoring_summary` hands it to every client of the
scoring service's /v1/monitoring and the validation pack shows it. The group release of the same issue
suppresses cells under `MIN_CELL_ROWS`; these do not.
"""

from __future__ import annotations

from pathlib import Path

from sampan.config import parse_config
from sampan.runtime.backtest import backtest, monitoring_summary
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store

FEATURES = ["x1", "x2", "x3"]


def test_a_one_applicant_backtest_does_not_log_the_applicants_outcome(tmp_path: Path) -> None:
    from test_monitoring import write_csv

    parties = [{"name": f"bank_{i}", "path": str(write_csv(tmp_path / f"bank_{i}.csv", 80, i))} for i in range(3)]
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    start_run(parse_config({"run": {"name": "champion", "rounds": 1, "seed": 5, "report_dir": str(tmp_path / "r")},
                            "schema": {"id": "id", "label": "y", "features": FEATURES}, "parties": parties,
                            "training": {"learning_rate": 0.2, "batch_size": 32}}), store)
    one = tmp_path / "one.csv"
    one.write_text("id,x1,x2,x3,y\njane-doe,0.1,0.2,0.3,1\n")  # one applicant who defaulted
    try:
        backtest(store, "champion", one)
    except ValueError:
        return  # refusing a population too small to aggregate is fine
    logged = monitoring_summary(store, "champion")["backtest"][-1]
    assert not (logged["rows"] == 1 and logged["now"].get("positive_rate") == 1.0), logged
