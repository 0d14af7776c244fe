"""Review (issue 12, deploy gate for horizontal jobs): SECURITY.md (horizontal training) says that with
`[secure_aggregation]` the coordinator "sees only sums of these (updates, weights, losses, evaluation
histograms), over at least min_contributors parties", and the party docstring says that with secure
aggregation an evaluation is "one masked vector ... (no local metrics), at exactly the default bins".

R12-HOR-3: the deployed gate binds `fit` to the job's announced SecAgg (`_check_fit`: "this fit request carries
no secure aggregation, which the job announced") but `evaluate` only to the party's own `[allow] require`
list. A party whose list does not itself require SecAgg accepts a job announcing "secure_aggregation"; the
coordinator then sends `evaluate` WITHOUT ``secagg`` and gets this one party's exact holdout histogram at
`MAX_BINS` (2000) bins, its exact loss/Brier sums and its local metrics (AUC, ...), in clear. The job (and
the receipt built from it) promised sums over >= 3 banks. Fix: in `check_request`, refuse `evaluate`
without ``secagg`` when the accepted job announced secure_aggregation (as `_check_fit` does).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sampan.core.capability import PartySetup
from sampan.data import PartyData
from sampan.deploy.allow import AllowSection, JobRefused, check_job, check_request
from sampan.deploy.config import PartyPrivacySection
from sampan.deploy.party_agent import PartyAgent
from sampan.horizontal.capability import HORIZONTAL
from sampan.privacy.party_policy import PolicyRefused
from sampan.wire import Message

FEATURES = ["f0", "f1", "f2"]


def _data(n: int, rng: np.random.Generator) -> PartyData:
    return PartyData(party="bank_a", ids=np.array([f"r{i}" for i in range(n)], dtype=object),
                     X=rng.normal(size=(n, 3)), y=(rng.random(n) < 0.4).astype(np.int8), feature_names=FEATURES)


def test_announced_secagg_binds_evaluate(tmp_path) -> None:
    allow = AllowSection()  # the party relies on the job it accepted, as it does for fit
    job = {"workflow": "horizontal", "operator": None, "parties": ["bank_a", "bank_b", "bank_c"],
           "label_holder": None, "protections": ["secure_aggregation"], "noise_multipliers": {},
           "secagg_min_contributors": 3, "model": "logistic"}
    rng = np.random.default_rng(2)
    train, test = _data(120, rng), _data(60, rng)
    fit = Message("run-1", 1, "coordinator", "bank_a", "fit", arrays={"params": np.zeros(4)},
                  meta={"model": {"kind": "logistic", "n_features": 3}, "train": {"epochs": 1}, "seed": 0})
    with pytest.raises(JobRefused, match="secure aggregation"):  # control: fit is bound to the announced SecAgg
        check_request(allow, "bank_a", fit.kind, fit.meta, job)
    answered = None
    try:
        check_job(allow, "bank_a", job, "loans", FEATURES)
        agent = SimpleNamespace(config=SimpleNamespace(allow=allow, privacy=PartyPrivacySection(),
                                                       party=SimpleNamespace(state_dir=str(tmp_path))), _ledgers={})
        policy = PartyAgent._horizontal_policy(agent, job)  # type: ignore[arg-type]  # as the agent builds it
        app = HORIZONTAL.party_app(PartySetup("bank_a", (train, test), job, policy=policy, state_dir=tmp_path,
                                              deployed=True, options={"secagg": None, "max_evaluations": 20}))
        request = Message("run-1", 1, "coordinator", "bank_a", "evaluate", arrays={"params": np.r_[50.0, 0, 0, 0]},
                          meta={"model": {"kind": "logistic", "n_features": 3}, "bins": 2000})
        check_request(allow, "bank_a", request.kind, request.meta, job)
        reply = app.handle(request)
        answered = None if reply.is_error else reply
    except (JobRefused, PolicyRefused):
        pass
    assert answered is None, (f"one bank's evaluation left in clear in a SecAgg job: {len(answered.arrays['pos'])} "
                              f"bins, metrics {sorted(answered.meta['metrics'])}")


def test_party_itself_refuses_clear_evaluate_and_fit_in_a_secagg_job(tmp_path) -> None:
    """Without the deploy gate, the party's own app (built from the job it accepted) refuses them too."""
    job = {"workflow": "horizontal", "operator": None, "parties": ["bank_a", "bank_b", "bank_c"],
           "label_holder": None, "protections": ["secure_aggregation"], "noise_multipliers": {},
           "secagg_min_contributors": 3, "model": "logistic"}
    rng = np.random.default_rng(2)
    train, test = _data(120, rng), _data(60, rng)
    app = HORIZONTAL.party_app(PartySetup("bank_a", (train, test), job, state_dir=tmp_path,
                                          options={"secagg": None, "max_evaluations": 20}))
    model = {"kind": "logistic", "n_features": 3}
    for request in (Message("run-1", 1, "coordinator", "bank_a", "evaluate", arrays={"params": np.zeros(4)},
                            meta={"model": model}),
                    Message("run-1", 1, "coordinator", "bank_a", "fit", arrays={"params": np.zeros(4)},
                            meta={"model": model, "train": {"epochs": 1}, "seed": 0})):
        reply = app.handle(request)
        assert reply.is_error and "secure aggregation" in str(reply.meta), (request.kind, reply.meta)
    with pytest.raises(JobRefused, match="secure aggregation"):
        check_request(AllowSection(), "bank_a", "evaluate", {"model": model}, job)
