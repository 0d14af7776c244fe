"""Review (issue 13) of the deployed gate for "each bank alone" (`sampan.deploy.allow_requests._check_bank_alone`).

R13-DEP-1: the job a bank accepts announces the comparison's training length (`job["bank_alone"]["epochs"]`,
`job_description`), but `check_request` never compares the request's ``train`` with it. Under DP the bank's
DP2 charge for the local-only model is steps x q with steps = epochs / q (or ``max_steps``): a coordinator that
announced 3 epochs may ask for 300 (or max_steps=10**6), spending the bank's budget on a release 100x the one it
agreed to (its own ledger charges it correctly, so this is consent, not accounting). Without DP the same request
is a compute burden the bank never accepted. The gate checks every other announced setting (DP levels, SecAgg,
tree shape); this one it drops.
"""

from __future__ import annotations

import pytest

from sampan.deploy.allow import JobRefused, check_request, job_description

TRAIN = {"epochs": 300, "batch_size": 16, "learning_rate": 0.1, "optimizer": "sgd", "momentum": 0.0, "l2": 0.0,
         "max_steps": None}


def test_the_gate_holds_bank_alone_to_the_announced_epochs() -> None:
    job = job_description({"run": {"name": "j"}, "bank_alone": {"epochs": 3},
                           "privacy": {"dp2": {"noise_multiplier": 1.0}}},
                          workflow="horizontal", operator="ops", parties=["a", "b", "c"], label_holder=None)
    assert job["bank_alone"] == {"epochs": 3}
    meta = {"dp2": {"noise_multiplier": 1.0, "max_grad_norm": 1.0}, "public_rows": 500, "train": TRAIN}
    with pytest.raises(JobRefused):
        check_request(None, "a", "bank_alone", meta, job)
