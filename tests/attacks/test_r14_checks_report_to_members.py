"""R14-CHECKS-5: a checks job's outputs are per-party statistics (each bank's [rows, positives], each bank's PSI per
column, each partner's overlap), and its receipt says they are "revealed to the coordinator". The control plane
serves the run's HTML report to every principal who can see the consortium (`report.read` is granted to all roles,
`ControlPlane.report_files` checks only consortium visibility), so the party operator of a competitor bank reads
bank_a's exact portfolio size and default count from a checks job run without DP.

Fixed: `ControlPlane.report_files` serves a checks run's report to coordinator-side roles only (admin, analyst,
auditor); the receipt says so."""

from __future__ import annotations

from pathlib import Path

import _checks_parties as fixture
from _web_plane import BANKS, consortium_with_banks, make_world

from sampan.checks.report import checks_html
from sampan.runtime.store import Store
from sampan.web.errors import NotFound

CHECKS = {"run": {"name": "checks", "workflow": "checks"}, "checks": {}}


def test_another_banks_operator_cannot_read_a_banks_exact_checks_statistics(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    world = make_world(tmp_path)
    cid, operators = consortium_with_banks(world)
    config = {**CHECKS, "run": {**CHECKS["run"], "report_dir": str(reports)}}
    job = world.plane.create_job(world.admin, cid, "checks", config, {b: "sme_loans" for b in BANKS})
    for bank, op in operators.items():
        world.plane.decide(op, job["id"], bank, True)
    run_id = str(world.plane.start_job(world.admin, job["id"])["run_id"])
    # the report the runner writes for a checks run (the real outcome of three banks, no DP)
    outcome = fixture.run(fixture.config(), fixture.banks(), Store.open("sqlite://")).result.info["checks"]
    rows_a = outcome["label"]["bank_0"]["rows"]
    (reports / f"{run_id}.html").write_text(checks_html(outcome).replace("bank_0", "bank_a"), encoding="utf-8")
    try:
        files = world.plane.report_files(operators["bank_b"], run_id)
    except NotFound:
        return
    path = files.get("report_path")
    text = Path(path).read_text(encoding="utf-8") if path else ""
    assert not ("bank_a" in text and f"<td>{rows_a:.4g}</td>" in text), \
        "bank_b's operator reads bank_a's exact row count from the checks report"
