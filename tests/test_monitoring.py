"""Monitoring a served model (issue 13, item 9): PSI drift at the party on bins fixed at training (exact or a
charged DP release), the serving-side ScoreMonitor, backtests when outcomes arrive, and a challenger."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sampan.cli import app
from sampan.config import parse_config
from sampan.privacy.ledger import Ledger
from sampan.runtime.backtest import monitoring_summary, score_monitor
from sampan.runtime.monitoring import DriftReference, drift_release, psi, psi_status
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store

FEATURES = ["x1", "x2", "x3"]
WEIGHTS = np.array([1.5, -1.0, 0.5])


def write_csv(path: Path, n: int, seed: int, shift: float = 0.0, label: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    X[:, 0] += shift
    y = (X @ WEIGHTS + rng.normal(size=n) > 0).astype(int)
    head = ["id", *FEATURES, *(["y"] if label else [])]
    lines = [",".join(head)] + [",".join([f"r{seed}-{i}", *(f"{v:.5f}" for v in X[i]), *([str(y[i])] if label else [])])
                                for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path]:
    root = tmp_path_factory.mktemp("monitor")
    parties = [{"name": f"bank_{i}", "path": str(write_csv(root / f"bank_{i}.csv", 300, i))} for i in range(3)]
    store = Store.open(f"sqlite:///{root / 'runs.db'}")
    for name, lr in (("champion", 0.2), ("challenger", 0.02)):
        start_run(parse_config({"run": {"name": name, "rounds": 2, "seed": 5, "report_dir": str(root / "rep")},
                                "schema": {"id": "id", "label": "y", "features": FEATURES}, "parties": parties,
                                "training": {"learning_rate": lr, "batch_size": 32}}), store)
    return store, root


def test_psi_reads_as_credit_risk_teams_read_it() -> None:
    assert psi([10, 20, 30], [10, 20, 30]) == 0.0
    assert psi([50, 50], [90, 10]) > 0.25 and psi_status(psi([50, 50], [90, 10])) == "investigate"
    assert psi_status(0.05) == "stable" and psi_status(0.2) == "watch" and psi_status(float("nan")) == "not measurable"


def test_cli_drift_flags_the_shifted_feature_and_records_it(trained: tuple[Store, Path], tmp_path: Path) -> None:
    store, root = trained
    current = write_csv(tmp_path / "current.csv", 400, 9, shift=1.5, label=False)
    out = tmp_path / "release.json"
    result = CliRunner().invoke(app, ["monitor", "drift", "--model", "champion",
                                      "--reference", str(root / "bank_0.csv"), "--data", str(current),
                                      "--party", "bank_0", "--out", str(out),
                                      "--store", str(store.engine.url)])
    assert result.exit_code == 0, result.output
    release = json.loads(out.read_text())
    assert release["feature_psi"]["x1"] > 0.25 > max(release["feature_psi"]["x2"], release["feature_psi"]["x3"])
    assert release["score_psi"] > 0.1 and release["status"] == "investigate"
    assert release["receipt"][0]["protection"].startswith("revealed exactly")  # without DP: receipted
    summary = monitoring_summary(store, "champion")
    assert summary["drift"][-1]["party"] == "bank_0" and "score_counts" not in summary["drift"][-1]


def test_dp_drift_release_is_charged_before_it_leaves(trained: tuple[Store, Path], tmp_path: Path) -> None:
    store, _ = trained
    entry = store.get_model("champion")
    reference = DriftReference.from_model(entry.arrays, entry.meta, store.get_run(entry.run_id).info)
    rng = np.random.default_rng(0)
    ledger = tmp_path / "bank_0.ledger.json"
    release = drift_release("bank_0", reference, reference_scores=rng.random(300), current_scores=rng.random(300),
                            reference_X={"x1": rng.normal(size=300)}, current_X={"x1": rng.normal(size=300) + 2},
                            noise_multiplier=2.0, ledger_path=ledger)
    events = Ledger.from_json(ledger.read_text()).events
    assert len(events) == 1 and events[0].level == "DP1" and events[0].noise_multiplier == 2.0
    assert release.noise_multiplier == 2.0 and release.receipt[0]["protection"].startswith("charged")
    assert release.feature_psi["x1"] > 0.25  # a large shift survives the noise
    counts = release.feature_counts["x1"]["current"]
    assert any(c != round(c) for c in counts)  # noised, not exact counts


def test_score_monitor_compares_served_pds_with_the_training_bands(trained: tuple[Store, Path]) -> None:
    store, _ = trained
    monitor = score_monitor(store, "champion")
    assert monitor.snapshot()["scored"] == 0
    monitor.observe(np.full(200, 0.99))  # every served applicant in the riskiest band
    snap = monitor.snapshot()
    assert snap["scored"] == 200 and snap["status"] == "investigate" and len(snap["counts"]) == len(snap["bins"]) + 2


def test_backtest_and_challenger_at_the_bank(trained: tuple[Store, Path], tmp_path: Path) -> None:
    store, _ = trained
    url = str(store.engine.url)
    outcomes = write_csv(tmp_path / "outcomes.csv", 400, 21)
    out = tmp_path / "backtest.json"
    result = CliRunner().invoke(app, ["monitor", "backtest", "--model", "champion", "--outcomes", str(outcomes),
                                      "--out", str(out), "--store", url])
    assert result.exit_code == 0, result.output
    backtest = json.loads(out.read_text())
    assert backtest["now"]["auc"] > 0.7 and backtest["training"]["auc"] > 0.7
    assert sum(b["count"] for b in backtest["bands"]) == 400
    out = tmp_path / "challenger.json"
    result = CliRunner().invoke(app, ["monitor", "challenger", "--model", "champion", "--challenger", "challenger",
                                      "--data", str(outcomes), "--out", str(out), "--store", url])
    assert result.exit_code == 0, result.output
    duel = json.loads(out.read_text())
    assert duel["agreement"]["rank_correlation"] > 0.5 and 0 <= duel["agreement"]["same_decision"] <= 1
    assert set(duel["metrics"]) == {"champion", "challenger"}
    summary = monitoring_summary(store, "champion")
    assert summary["backtest"] and summary["challenger"]


def test_bad_outcomes_name_the_file_column_and_rows(trained: tuple[Store, Path], tmp_path: Path) -> None:
    store, _ = trained
    bad = tmp_path / "bad.csv"
    bad.write_text("id,x1,x2,x3,y\na,0,0,0,1\nb,0,0,0,yes\n")
    result = CliRunner().invoke(app, ["monitor", "backtest", "--model", "champion", "--outcomes", str(bad),
                                      "--store", str(store.engine.url)])
    assert result.exit_code == 2 and "bad.csv" in result.output and "'y'" in result.output and "[3]" in result.output


def test_the_service_report_is_what_serve_shows(trained: tuple[Store, Path]) -> None:
    from sampan.monitoring import service_report

    store, _ = trained
    report = service_report("champion", store)
    assert report["model"] == "champion" and set(report) >= {"drift", "backtest", "challenger"}


def test_the_validation_pack_shows_what_monitoring_recorded(trained: tuple[Store, Path]) -> None:
    from sampan.runtime.validation_pack import build_validation_pack

    store, _ = trained
    stability = next(s for s in build_validation_pack(store, "champion").sections if s.title == "Stability")
    captions = [t.caption for t in stability.tables]
    assert stability.tables[0].headers[:3] == ["measured", "party", "score PSI"]  # drift, measured at bank_0
    assert "Backtests" in captions and "Challenger" in captions and not stability.paragraphs
