"""Each bank alone vs the consortium (issue 13, item 6): each bank trains a local-only model on its own rows and
scores both models on its own holdout; only the two histograms travel, and the coordinator prints an AUC pair."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sampan.config import parse_config
from sampan.errors import ConfigError
from sampan.report.bank_alone import bank_alone_rows, bank_alone_section
from sampan.runtime.recorder import StoreRecorder
from sampan.runtime.runner import start_run
from sampan.runtime.store import Store
from sampan.wire.catalogue import Setup, horizontal_catalogue

FEATURES = ["x1", "x2", "x3"]


def write_banks(tmp_path: Path, sizes: tuple[int, ...] = (120, 240, 400), seed: int = 3,
                prefix: str = "b") -> list[dict[str, Any]]:
    """One CSV per bank, same features and label rule, different sizes (the smallest gains most from the rest)."""
    rng = np.random.default_rng(seed)
    parties = []
    for i, n in enumerate(sizes):
        X = rng.normal(size=(n, len(FEATURES)))
        y = (X @ np.array([1.5, -1.0, 0.5]) + rng.normal(scale=1.0, size=n) > 0).astype(int)
        path = tmp_path / f"bank_{i}.csv"
        lines = ["id," + ",".join(FEATURES) + ",y"]
        lines += [f"{prefix}{i}r{j}," + ",".join(f"{v:.6f}" for v in X[j]) + f",{y[j]}" for j in range(n)]
        path.write_text("\n".join(lines) + "\n")
        parties.append({"name": f"bank_{i}", "path": str(path)})
    return parties


def bank_alone_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"run": {"name": "alone", "rounds": 3, "seed": 5, "report_dir": str(tmp_path / "rep")},
            "schema": {"id": "id", "label": "y", "features": FEATURES}, "parties": write_banks(tmp_path),
            "training": {"batch_size": 32, "learning_rate": 0.2}, "bank_alone": {"epochs": 3}, **extra}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'runs.db'}")


def test_each_bank_gets_its_local_only_and_consortium_auc_on_its_own_holdout(tmp_path: Path, store: Store) -> None:
    finished = start_run(parse_config(bank_alone_config(tmp_path)), store)
    summary = finished.result.info["bank_alone"]
    assert set(summary["banks"]) == {"bank_0", "bank_1", "bank_2"} and summary["dp"] is False
    for row in summary["banks"].values():
        assert 0.5 < row["local_auc"] <= 1 and 0.5 < row["consortium_auc"] <= 1
        assert row["gain"] == pytest.approx(row["consortium_auc"] - row["local_auc"])
        assert row["n_holdout"] > 0
    rows = bank_alone_rows(summary)
    assert [r[0] for r in rows] == ["bank_0", "bank_1", "bank_2"] and all("nan" not in " ".join(r) for r in rows)
    assert "AUC alone" in bank_alone_section(summary).html
    report = (tmp_path / "rep" / f"{finished.run_id}.html").read_text()
    assert "Each bank alone vs the consortium" in report and "bank_alone_result" in report  # table + receipt row


def test_the_release_is_declared_per_bank_in_the_catalogue() -> None:
    catalogue = horizontal_catalogue(Setup(bank_alone=True, secagg=True))
    reply = catalogue["party:bank_alone_result"]
    assert reply.field("arrays.local.pos").protection == "visible"  # revealed without DP, listed in the receipt
    assert "secure aggregation cannot apply" in reply.field("arrays.local.pos").what
    dp = horizontal_catalogue(Setup(dp1=True, dp2=True, bank_alone=True))["party:bank_alone_result"]
    assert dp.field("arrays.local.neg").protection == "derived" and "DP2" in dp.field("arrays.local.neg").mechanisms
    assert "party:bank_alone_result" not in horizontal_catalogue(Setup())


def test_config_refuses_bank_alone_where_it_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dp2"):
        parse_config(bank_alone_config(tmp_path, privacy={"epsilon": 5.0, "dp1": {"noise_multiplier": 2.0,
                                                                                   "bounds": {"*": [-4, 4]}}}))
    with pytest.raises(ConfigError, match="gbdt"):
        parse_config(bank_alone_config(tmp_path, model={"kind": "gbdt"}))


DP = {"epsilon": 50.0, "dp1": {"noise_multiplier": 2.0, "bounds": {"*": [-4.0, 4.0]}},
      "dp2": {"noise_multiplier": 1.0, "max_grad_norm": 1.0}}


def test_under_dp_the_local_only_model_is_dp_sgd_and_charged_to_the_run_ledger(tmp_path: Path, store: Store) -> None:
    finished = start_run(parse_config(bank_alone_config(tmp_path, privacy=DP)), store)
    summary = finished.result.info["bank_alone"]
    assert summary["dp"] is True and set(summary["banks"]) == {"bank_0", "bank_1", "bank_2"}
    assert not any(row.get("unavailable") for row in summary["banks"].values()), summary  # exact evaluated scaler
    events = [e for e in _ledger_events(store, finished.run_id) if "local-only" in e["note"]]
    assert sorted(e["party"] for e in events) == ["bank_0", "bank_1", "bank_2"]  # one DP2 release per bank
    assert all(e["level"] == "DP2" and e["noise_multiplier"] == 1.0 and e["count"] >= 3 for e in events)
    assert store.get_run(finished.run_id).status == "completed"


def _ledger_events(store: Store, run_id: str) -> list[dict[str, Any]]:
    text = StoreRecorder(store, run_id).ledger()
    assert text is not None
    return list(json.loads(text)["events"])


def test_explicit_test_files_are_the_holdouts_and_the_ids_export(tmp_path: Path, store: Store) -> None:
    from typer.testing import CliRunner

    from sampan.cli import app

    config = bank_alone_config(tmp_path)
    (tmp_path / "held").mkdir()
    held = write_banks(tmp_path / "held", sizes=(30, 30, 30), seed=8, prefix="t")
    config["data"] = {"test_path": str(tmp_path / "held" / "{party}.csv")}  # held/bank_0.csv, ...
    assert [h["path"] for h in held] == [str(tmp_path / "held" / f"bank_{i}.csv") for i in range(3)]
    finished = start_run(parse_config(config), store)
    assert {row["n_holdout"] for row in finished.result.info["bank_alone"]["banks"].values()} == {30}
    out = tmp_path / "holdout.csv"
    result = CliRunner().invoke(app, ["runs", "holdout", finished.run_id, "--out", str(out),
                                      "--store", str(store.engine.url)])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "party,id" and len(lines) == 91 and lines[1].startswith("bank_0,t0r")


def test_a_date_column_holds_out_each_banks_newest_rows(tmp_path: Path) -> None:
    from sampan.horizontal.simulation import load_splits

    config = bank_alone_config(tmp_path)
    for party in config["parties"]:
        path = Path(party["path"])
        rows = path.read_text().splitlines()
        dated = [rows[0] + ",month"] + [f"{r},2026-{1 + i % 12:02d}" for i, r in enumerate(rows[1:])]
        path.write_text("\n".join(dated) + "\n")
    config["data"] = {"date_column": "month", "test_fraction": 0.25}
    splits = load_splits(parse_config(config), 5)
    for split in splits.values():
        assert split.train.feature_names == FEATURES  # the date is not a feature
        assert len(split.test) == round(0.25 * (len(split.train) + len(split.test)))
    with pytest.raises(ConfigError, match="remove path"):  # a submitted config names no file of a bank
        parse_config({**config, "parties": [{"name": "b", "test_path": "x.csv"}]}, deployment=True)
    with pytest.raises(ConfigError, match="data.test_path"):  # several parties: one file each, by name
        parse_config({**config, "data": {"test_path": "held.csv"}})


def test_a_submitted_config_keeps_bank_alone_for_the_job(tmp_path: Path) -> None:
    config = bank_alone_config(tmp_path)
    config["parties"] = [{"name": p["name"]} for p in config["parties"]]
    assert parse_config(config, deployment=True).bank_alone is not None  # announced in the job, checked by agents


def test_the_receipt_names_the_per_bank_release(tmp_path: Path, store: Store) -> None:
    from sampan.runtime.receipt import build_receipt

    finished = start_run(parse_config(bank_alone_config(tmp_path, secure_aggregation={"threshold": 0.6})), store)
    sent = build_receipt(store, finished.run_id)["parties"]["bank_0"]["sent"]
    row = next(r for r in sent if r["kind"] == "bank_alone_result")
    assert "secure aggregation" in row["protection"] and row["protection"].startswith("none (revealed)")
