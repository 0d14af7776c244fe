"""The checks job deployed: real coordinator and agents over gRPC + mTLS (threads, loopback).

Claims: each bank answers the checks job's requests only (schema, label, histogram), under [checks.dp] only noised
releases reach the coordinator, and a bank whose `[allow] workflows` does not list "checks" takes no part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _deploy_federation import ThreadFederation, run_config

CHECKS: dict[str, Any] = {"bounds": {"years_in_business": [0, 40], "credit_utilisation": [0, 1]},
                          "columns": ["years_in_business", "credit_utilisation"], "dp": {}}


def _submit(fed: ThreadFederation) -> str:
    config = run_config("checks", checks=CHECKS)
    config["run"]["workflow"] = "checks"
    return fed.submit(config)


def test_a_deployed_checks_job_answers_checks_requests_only_and_noised(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, n=1500)
    try:
        run_id = _submit(fed)
        status = fed.wait(run_id, 180)
        assert status["status"] == "completed", status.get("error")
        for name in fed.agents:
            asked = [k for k in fed.kinds(name, run_id) if not k.startswith(("deploy.", "consent."))]
            assert asked == ["checks.schema", "checks.label", "checks.histogram"]
        info = fed.coordinator.store.get_run(run_id).info
        assert all(not float(v["rows"]).is_integer() for v in info["checks"]["label"].values())  # Laplace-noised
        assert {p: round(v["epsilon_spent"], 6) for p, v in info["privacy"]["parties"].items()} == {
            name: 1.5 for name in fed.agents}
    finally:
        fed.close()


def test_a_bank_that_does_not_allow_checks_takes_no_part(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, n=1500, allow={"bank_kowloon": {"workflows": ["horizontal"]}})
    try:
        run_id = _submit(fed)
        status = fed.wait(run_id, 180)
        assert status["status"] == "failed" and "bank_kowloon" in str(status.get("error"))
        assert not [k for k in fed.kinds("bank_kowloon", run_id) if k.startswith("checks.")]
    finally:
        fed.close()


def test_a_deployed_vertical_checks_job_counts_overlaps_without_any_alignment(tmp_path: Path) -> None:
    """Partners answer only the schema, the run keys and their two PSI steps (cardinality mode): no alignment, no
    training request reaches anyone; the bank reports noised counts only."""
    allow = {"bank": {"partners": ["payments", "delivery"]},
             "payments": {"partners": ["bank", "delivery"], "label_holders": ["bank"]},
             "delivery": {"partners": ["bank", "payments"], "label_holders": ["bank"]}}
    fed = ThreadFederation(tmp_path, vertical=True, allow=allow, n=1500)
    try:
        run_id = fed.submit({"run": {"name": "vchecks", "seed": 1, "workflow": "checks"},
                             "deploy": {"dataset": "vertical", "parties": ["bank", "payments", "delivery"]},
                             "vertical": {"label_holder": "bank"}, "checks": {"dp": {}}})
        status = fed.wait(run_id, 180)
        assert status["status"] == "completed", status.get("error")
        for partner in ("payments", "delivery"):
            asked = [k for k in fed.kinds(partner, run_id) if not k.startswith(("deploy.", "consent."))]
            assert asked == ["checks.schema", "vertical.hello", "vertical.peers", "psi.accept", "psi.respond"]
        bank = [k for k in fed.kinds("bank", run_id) if not k.startswith(("deploy.", "consent."))]
        assert "psi.align" not in bank and bank.count("checks.overlap") == 2
        overlap = fed.coordinator.store.get_run(run_id).info["checks"]["overlap"]["partners"]
        assert all(not float(v["count"]).is_integer() for v in overlap.values())  # Laplace-noised at the bank
    finally:
        fed.close()
