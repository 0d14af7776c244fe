"""R15-RR22-8: a party's allow-list cannot refuse the RR22 backend: "opt-in" is the coordinator's choice alone.

Attack: a coordinator announces ``[vertical] psi_backend = "rr22"`` in an otherwise ordinary vertical job. The
deploy gate only checks that ``psi.rr22.*`` requests match what the job announced (allow_vertical.py:56); the
party's ``[allow]`` section (`AllowSection`, extra="forbid") has no rule on the PSI backend, so every partner
whose list admits the job runs spu's RR22, which the project itself states is weaker than the default: secure
against semi-honest parties only, reveals each side's longest id length to the other, and runs a third-party
C++ link that listens on the party's loopback (R15-RR22-4). The only thing in the party's hands is whether a
``.venv-spu`` happens to exist, and ``make test`` installs one.

Expected safe behaviour: RR22 is opt-in AT THE PARTY: a party whose allow-list does not admit it (default:
refuse, or an explicit ``psi_backends`` rule) refuses a job announcing it, with a JobRefused naming the rule.
Fixed: `[allow] psi_backends` (default ["ecdh"]); a job announcing rr22 is refused unless the party lists it.
"""

from __future__ import annotations

import pytest

from sampan.deploy.allow import AllowSection, JobRefused, check_job, job_description

# a partner that lists its bank, nothing about PSI
ALLOW = AllowSection.model_validate({"partners": ["bank"], "label_holders": ["bank"]})
COLUMNS = [f"c{j}" for j in range(4)]


def test_a_party_that_never_opted_in_refuses_an_rr22_job() -> None:
    job = job_description({"vertical": {"psi_backend": "rr22"}}, workflow="vertical", operator=None,
                          parties=["bank", "payments"], label_holder="bank")
    job = {**job, "workflow": "vertical"}
    assert job["vertical"]["psi_backend"] == "rr22"
    with pytest.raises(JobRefused):
        check_job(ALLOW, "payments", job, "vertical", COLUMNS)


def test_a_party_that_opted_in_accepts_an_rr22_job_and_ecdh_stays_the_default() -> None:
    opted = AllowSection.model_validate({"partners": ["bank"], "label_holders": ["bank"],
                                         "psi_backends": ["ecdh", "rr22"]})
    job = job_description({"vertical": {"psi_backend": "rr22"}}, workflow="vertical", operator=None,
                          parties=["bank", "payments"], label_holder="bank")
    check_job(opted, "payments", {**job, "workflow": "vertical"}, "vertical", COLUMNS)
    ecdh = job_description({"vertical": {}}, workflow="vertical", operator=None, parties=["bank", "payments"],
                           label_holder="bank")
    check_job(ALLOW, "payments", {**ecdh, "workflow": "vertical"}, "vertical", COLUMNS)
    with pytest.raises(JobRefused, match="psi_backends"):
        check_job(ALLOW, "payments", {**job, "workflow": "vertical"}, "vertical", COLUMNS)
