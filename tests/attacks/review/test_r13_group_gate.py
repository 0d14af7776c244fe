"""Review (issue 13 item 8) of the deployed gate for `evaluate_groups` (`sampan.deploy.allow_requests._check_groups`).

R13-GRP-5: the job a bank accepts announces only ``groups: True`` (`job_description`), not WHICH columns and bands
the consortium declared (`[evaluation] groups`, `group_bands`). The gate then admits any grouping the coordinator
sends: a job that announced fairness by ``sector`` lets the coordinator ask for the holdout counts banded by
``age`` around one customer's value (the non-DP per-level counts and, with R13-GRP-1, a withheld record's label),
or, under DP, specs whose levels mix several categories (R13-GRP-2). Every other announced setting (DP levels,
SecAgg, tree shape, the bank_alone epochs) is what the bank's consent is checked against; this one is dropped.
"""

from __future__ import annotations

import pytest

from sampan.deploy.allow import JobRefused, check_request, job_description
from sampan.horizontal.group_evaluation import EVALUATE_GROUPS, GROUP_BINS


@pytest.mark.xfail(strict=True, reason="R13-GRP-5: the gate admits group columns/bands the job never announced "
                                       "(the job carries groups=True only)")
def test_the_gate_holds_group_requests_to_the_announced_groups() -> None:
    job = job_description({"run": {"name": "j"}, "evaluation": {"groups": ["sector"]}},
                          workflow="horizontal", operator="ops", parties=["a", "b", "c"], label_holder=None)
    assert job.get("groups")
    unannounced = [{"column": "age", "feature": "age", "cuts": [98.5, 99.5]}]  # a band around one customer
    with pytest.raises(JobRefused):
        check_request(None, "a", EVALUATE_GROUPS, {"groups": unannounced, "bins": GROUP_BINS}, job)
