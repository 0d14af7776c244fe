"""Checks before training (issue 14 item 4): schema agreement, label balance, drift between banks, vertical id
overlap by PSI cardinality mode; findings in the run info, the report, the receipt and `sampan run`'s output."""

from __future__ import annotations

import json
from pathlib import Path

import _checks_parties as banks_fixture
import numpy as np
import pytest
from typer.testing import CliRunner

import sampan
from sampan.checks.protocol import histogram_counts
from sampan.cli import app
from sampan.errors import ConfigError
from sampan.privacy import Ledger
from sampan.runtime.receipt import build_receipt
from sampan.runtime.store import Store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "checks.toml"


def _flagged(out: dict, check: str) -> set[tuple[str | None, str | None]]:
    return {(f["party"], f["column"]) for f in out["findings"] if f["check"] == check and f["severity"] == "warning"}


def test_drift_names_the_shifted_bank_and_column_and_nothing_else() -> None:
    tables = banks_fixture.banks(shifted="bank_1")
    out = banks_fixture.run(banks_fixture.config(), tables).result.info["checks"]
    assert out["passed"] is True and out["dp"] is None
    flagged = _flagged(out, "drift")
    assert ("bank_1", "utilisation") in flagged
    assert {column for _, column in flagged} == {"utilisation"}  # age and delinquencies agree across banks
    psi = out["drift"]["psi"]
    assert max(psi, key=lambda p: psi[p]["utilisation"]) == "bank_1"
    finding = next(f for f in out["findings"] if (f["party"], f["column"]) == ("bank_1", "utilisation"))
    assert finding["value"] > finding["threshold"] == 0.25 and "investigate" in finding["message"]


def test_without_dp_the_released_counts_are_exact() -> None:
    tables = banks_fixture.banks()
    out = banks_fixture.run(banks_fixture.config(), tables).result.info["checks"]
    assert not _flagged(out, "drift")
    for name, data in tables.items():
        assert data.y is not None
        assert out["label"][name]["rows"] == len(data.y)
        assert out["label"][name]["positive_rate"] == pytest.approx(float(np.mean(data.y)))
        expected = histogram_counts(name, data, out["drift"]["columns"], out["drift"]["bins"])
        assert np.array_equal(np.asarray(out["drift"]["histograms"][name]), expected)


def test_label_balance_outside_the_thresholds_is_a_warning() -> None:
    out = banks_fixture.run(banks_fixture.config({"min_positive_rate": 0.2}),
                            banks_fixture.banks()).result.info["checks"]
    assert _flagged(out, "label") == {(b, None) for b in banks_fixture.BANKS}
    finding = next(f for f in out["findings"] if f["check"] == "label")
    assert finding["threshold"] == 0.2 and finding["value"] < 0.2


def test_schema_disagreement_is_named_per_party_and_column() -> None:
    other = {"id": "id", "label": "y", "features": [{"name": "age", "bounds": [0.0, 120.0]},
                                                    {"name": "utilisation", "bounds": [0.0, 1.0]}]}
    out = banks_fixture.run(banks_fixture.config(), banks_fixture.banks(),
                            schemas={"bank_2": other}).result.info["checks"]
    errors = {(f["party"], f["column"]) for f in out["findings"] if f["severity"] == "error"}
    assert errors == {("bank_2", "age"), ("bank_2", "delinquencies")}
    assert out["passed"] is False
    assert [c[0] for c in out["drift"]["columns"]] == ["utilisation"]  # only columns every bank declares alike
    skipped = {f["column"] for f in out["findings"] if f["severity"] == "info"}
    assert {"age", "delinquencies"} <= skipped
    warned = banks_fixture.run(banks_fixture.config({"schema_mismatch": "warning"}), banks_fixture.banks(),
                               schemas={"bank_2": other}).result.info["checks"]
    assert warned["passed"] is True and not [f for f in warned["findings"] if f["severity"] == "error"]


def test_under_dp_every_release_is_charged_and_the_receipt_says_so(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    cfg = banks_fixture.config({"dp": {"label_epsilon": 0.5, "histogram_epsilon": 1.0}}, tmp_path)
    finished = banks_fixture.run(cfg, banks_fixture.banks(), store)
    info = finished.result.info
    spent = {p: v["epsilon_spent"] for p, v in info["privacy"]["parties"].items()}
    assert spent == {b: pytest.approx(1.5) for b in banks_fixture.BANKS}
    ledger = Ledger.from_json(store.ledger(finished.run_id) or "")  # persisted, write-ahead
    notes = sorted((e.party, e.step, e.epsilon) for e in ledger.events)
    assert notes == sorted([(b, 3, 0.5) for b in banks_fixture.BANKS] + [(b, 4, 1.0) for b in banks_fixture.BANKS])
    assert info["checks"]["label"]["bank_0"]["rows"] != 300  # noised (a float, almost surely not the count)
    receipt = build_receipt(store, finished.run_id)
    charged = {(m["kind"], m["field"]) for m in receipt["messages"] if m["protection"] == "charged"}
    assert {("checks.label", "meta.n"), ("checks.label", "meta.positives"),
            ("checks.histogram", "arrays.counts")} <= charged
    assert "Laplace" in receipt["reveals"]["drift"]
    html = finished.report_path.read_text(encoding="utf-8") if finished.report_path else ""
    assert "Checks before training" in html and "Laplace-noised" in html


def test_without_dp_the_receipt_lists_every_release_as_revealed(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    finished = banks_fixture.run(banks_fixture.config(tmp_path=tmp_path), banks_fixture.banks(), store)
    receipt = build_receipt(store, finished.run_id)
    rows = {(m["kind"], m["field"]): m["protection"] for m in receipt["messages"] if m["sender"] == "party"}
    assert rows[("checks.label", "meta.n")] == rows[("checks.histogram", "arrays.counts")] == "visible"
    assert rows[("checks.schema", "meta.schema.*")] == "public"
    assert "exact" in receipt["reveals"]["label balance"]


def test_vertical_overlap_by_psi_cardinality_counts_the_common_ids() -> None:
    from sampan.vertical.job import job_of, load_tables

    cfg = {"run": {"name": "checks-v", "workflow": "checks", "seed": 2, "report_dir": ""},
           "source": {"kind": "consortium", "n_smes": 400}, "vertical": {"label_holder": "bank"},
           "checks": {"min_overlap": 0.9}}
    finished = sampan.run(cfg, store=Store.open("sqlite://"))
    out = finished.result.info["checks"]
    parsed = sampan.config.parse_config(cfg)
    tables = load_tables(parsed)
    bank = set(tables["bank"].ids)
    partners = [p for p in tables if p != "bank"]
    for partner in partners:
        assert out["overlap"]["partners"][partner]["count"] == len(bank & set(tables[partner].ids))
        assert out["overlap"]["set_sizes"][partner] == len(tables[partner].ids)
    assert _flagged(out, "overlap") == {(p, None) for p in partners
                                        if len(bank & set(tables[p].ids)) / len(bank) < 0.9}
    assert list(out["label"]) == ["bank"]  # only the label holder is asked for label counts
    assert "drift" not in out  # vertical parties hold different columns
    text = json.dumps(finished.result.info, default=str)
    assert not any(str(i) in text for i in list(bank)[:50])  # no id reaches the coordinator's record
    assert job_of(parsed).label_holder == "bank"


def test_sampan_run_prints_the_findings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", str(EXAMPLE), "--store", f"sqlite:///{tmp_path / 'runs.db'}"])
    assert result.exit_code == 0, result.output
    assert "Checks passed" in result.output or "Checks FAILED" in result.output
    assert "Laplace-noised" in result.output
    assert list((tmp_path / "sampan-reports").glob("*.receipt.json"))


@pytest.mark.parametrize("checks, workflow, message", [
    ({"psi_watch": 0.3, "psi_alert": 0.2}, "checks", "psi_alert"),
    ({"bounds": {"age": [5.0, 1.0]}}, "checks", "checks.bounds.age"),
    ({}, "horizontal", "[checks] is set but run.workflow is 'horizontal'"),
])
def test_bad_checks_config_is_a_clear_error(checks: dict, workflow: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sampan.config.parse_config({"run": {"workflow": workflow}, "schema": banks_fixture.SCHEMA, "checks": checks,
                                    "parties": [{"name": "bank_0", "path": "x.csv"}]})
