"""An empty `[privacy.dpN]` table runs that DP level (noise "auto"), so the job every party approves must name it.

Found by the console's browser walk: `if section:` read an empty table as "no DP2", so the signed spec and the job
description listed no DP level while the run trained under DP-SGD: the approver saw less than what would run.
"""

from __future__ import annotations

import pytest

from sampan.deploy.allow import job_description
from sampan.deploy.consent.spec import _privacy_plan


@pytest.mark.parametrize("level", ["dp1", "dp2", "dp3"])
def test_an_empty_level_table_is_announced_and_planned(level: str) -> None:
    config = {"privacy": {"epsilon": 3.0, level: {}}}
    job = job_description(config, workflow="horizontal", operator="op", parties=["a", "b"], label_holder=None)
    assert level in job["protections"] and "dp" in job["protections"]
    assert job["noise_multipliers"][level] == "auto"
    plan = _privacy_plan(config)
    assert plan.levels[level] == 3.0  # the level is in the signed spec, at the run's budget
