"""Each bank alone vs the consortium, deployed (issue 13, item 6): the job announces it, each agent checks it.

A real coordinator and party agents over gRPC + mTLS on loopback run a horizontal job with `[bank_alone]`: every
bank answers the comparison from its own files and the coordinator gets an AUC pair per bank. The gate holds:
a coordinator that did not announce the comparison cannot ask for it, a bank whose list requires secure
aggregation refuses such a job at open (its figures would travel in clear), and under an announced DP job a
comparison without DP-SGD settings is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _deploy_federation import ThreadFederation, run_config

from sampan.deploy.allow import AllowSection, JobRefused, check_job, check_request, job_description

pytestmark = pytest.mark.slow


def test_a_deployed_run_compares_each_bank_alone_with_the_consortium(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, n=900)
    try:
        run_id = fed.submit(run_config("alone", bank_alone={"epochs": 2}))
        status = fed.wait(run_id)
        assert status["status"] == "completed", status
        for name in fed.agents:
            assert "bank_alone" in fed.kinds(name, run_id)
        info = fed.coordinator.store.get_run(run_id).info
        assert set(info["bank_alone"]["banks"]) == set(fed.agents)
        assert not any(row.get("unavailable") for row in info["bank_alone"]["banks"].values()), info["bank_alone"]
    finally:
        fed.close()


def _job(**config: object) -> dict[str, object]:
    return job_description({"run": {"name": "j"}, **config}, workflow="horizontal", operator="ops",
                           parties=["a", "b", "c"], label_holder=None)


def test_the_gate_holds_the_comparison_to_the_job() -> None:
    plain = _job()
    with pytest.raises(JobRefused, match="did not announce"):
        check_request(None, "a", "bank_alone", {}, plain)
    announced = _job(bank_alone={"epochs": 3})
    assert announced["bank_alone"] == {"epochs": 3}
    check_request(None, "a", "bank_alone", {}, announced)
    secure = AllowSection.model_validate({"require": ["secure_aggregation"]})
    with pytest.raises(JobRefused, match="secure aggregation"):
        check_job(secure, "a", {**announced, "protections": ["secure_aggregation"]}, "loans", [])
    private = _job(bank_alone={}, privacy={"dp2": {"noise_multiplier": 1.0}})
    with pytest.raises(JobRefused, match="DP-SGD"):
        check_request(None, "a", "bank_alone", {}, private)
    floor = AllowSection.model_validate({"min_noise_multiplier": 2.0})
    with pytest.raises(JobRefused, match="DP2"):
        check_request(floor, "a", "bank_alone", {"dp2": {"noise_multiplier": 1.0}}, private)
