"""The deployed gate holds `evaluate_groups` to the groups the job announced (`sampan.deploy.allow_groups`).

The finding it pins (issue 13 review, item 8):

R13-GRP-5: the job a bank accepts announces only ``groups: True`` (`job_description`), not WHICH columns and bands
the consortium declared (`[evaluation] groups`, `group_bands`). The gate then admits any grouping the coordinator
sends: a job that announced fairness by ``sector`` lets the coordinator ask for the holdout counts banded by
``age`` around one customer's value (the non-DP per-level counts and, with R13-GRP-1, a withheld record's label),
or, under DP, specs whose levels mix several categories (R13-GRP-2). Every other announced setting (DP levels,
SecAgg, tree shape, the bank_alone epochs) is what the bank's consent is checked against; this one is dropped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sampan.deploy.allow import JobRefused, check_request, job_description
from sampan.horizontal.group_evaluation import EVALUATE_GROUPS, GROUP_BINS


def test_the_gate_holds_group_requests_to_the_announced_groups() -> None:
    job = job_description({"run": {"name": "j"}, "evaluation": {"groups": ["sector"]}},
                          workflow="horizontal", operator="ops", parties=["a", "b", "c"], label_holder=None)
    assert job.get("groups")
    unannounced = [{"column": "age", "feature": "age", "cuts": [98.5, 99.5]}]  # a band around one customer
    with pytest.raises(JobRefused):
        check_request(None, "a", EVALUATE_GROUPS, {"groups": unannounced, "bins": GROUP_BINS}, job)
    announced = [{"column": "sector", "levels": ["sector=a", "sector=b"]}]  # what the coordinator's run sends
    check_request(None, "a", EVALUATE_GROUPS, {"groups": announced, "bins": GROUP_BINS}, job)


def test_a_job_announces_bands_and_the_gate_compares_them() -> None:
    job = job_description({"run": {"name": "j"}, "evaluation": {"groups": ["sector", "age"],
                                                                 "group_bands": {"age": [3, 8]}}},
                          workflow="horizontal", operator="ops", parties=["a", "b", "c"], label_holder=None)
    assert job["groups"] == [{"column": "sector"}, {"column": "age", "cuts": [3.0, 8.0]}]
    sector = {"column": "sector", "levels": ["sector=a", "sector=b"]}
    check_request(None, "a", EVALUATE_GROUPS, {"groups": [sector, {"column": "age", "feature": "age",
                                                                    "cuts": [3.0, 8.0]}], "bins": GROUP_BINS}, job)
    for groups in ([sector, {"column": "age", "feature": "age", "cuts": [3.0, 8.5]}],  # moved band
                   [sector],  # a column left out
                   [{"column": "age", "feature": "age", "cuts": [3.0, 8.0]}, sector]):  # reordered
        with pytest.raises(JobRefused, match="announced"):
            check_request(None, "a", EVALUATE_GROUPS, {"groups": groups, "bins": GROUP_BINS}, job)


@pytest.mark.slow
def test_a_deployed_run_reports_the_announced_groups(tmp_path: Path) -> None:
    """End to end over gRPC + mTLS: the job announces the groups, each agent's gate and mod accept exactly those."""
    from _deploy_federation import ThreadFederation, run_config

    fed = ThreadFederation(tmp_path, n=900)
    try:
        evaluation = {"groups": ["sector", "years_in_business"], "group_bands": {"years_in_business": [3, 10]}}
        run_id = fed.submit(run_config("groups", evaluation=evaluation))
        status = fed.wait(run_id)
        assert status["status"] == "completed", status
        groups = fed.coordinator.store.get_run(run_id).info["groups"]
        assert {row["column"] for row in groups["rows"]} == {"sector", "years_in_business"}
        assert all(EVALUATE_GROUPS in fed.kinds(name, run_id) for name in fed.agents)
    finally:
        fed.close()
