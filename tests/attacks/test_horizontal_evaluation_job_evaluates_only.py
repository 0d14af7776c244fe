"""Review (issue 12, horizontal capability / deploy gate): an "evaluation" job evaluates one registered model
on each bank's holdout (`EvaluationWorkflow`: one `evaluate` fan-out). A bank may restrict itself to such
jobs (`[allow] workflows = ["evaluation"]`): it lends its holdout to score models, it does not train.

R12-HOR-4: `EvaluationCapability.party_app` returns `HORIZONTAL.party_app(setup)`, which mounts every
horizontal handler (`describe`, `stats`, `fit`, `secagg_*`), and `check_request` treats an "evaluation" job's
requests exactly like a training job's (`_HORIZONTAL_JOBS`, `_HORIZONTAL_KINDS`). A coordinator that opened an
evaluation job then sends `fit` (any model, any learning rate: a one-step update is the gradient of the
bank's training rows), `describe` (exact row count, positive rate) and `stats` (exact feature sums of the
training rows) — none of which the accepted job announced, on rows an evaluation job never touches.
Fix: an evaluation job mounts (and the gate admits) `evaluate` (and the SecAgg stages it announced) only.
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
from sampan.horizontal.capability import EVALUATION
from sampan.privacy.party_policy import PolicyRefused
from sampan.wire import Message

FEATURES = ["f0", "f1", "f2"]
MODEL = {"kind": "logistic", "n_features": 3}


def _data(n: int, rng: np.random.Generator) -> PartyData:
    return PartyData(party="bank_a", ids=np.array([f"r{i}" for i in range(n)], dtype=object),
                     X=rng.normal(size=(n, 3)), y=(rng.random(n) < 0.4).astype(np.int8), feature_names=FEATURES)


def test_evaluation_job_answers_evaluate_only(tmp_path) -> None:
    allow = AllowSection(workflows=["evaluation"])
    job = {"workflow": "evaluation", "operator": None, "parties": ["bank_a", "bank_b"], "label_holder": None,
           "protections": [], "noise_multipliers": {}, "model": "logistic"}
    rng = np.random.default_rng(3)
    train, test = _data(100, rng), _data(25, rng)
    check_job(allow, "bank_a", job, "loans", FEATURES)  # the bank accepts an evaluation job
    agent = SimpleNamespace(config=SimpleNamespace(allow=allow, privacy=PartyPrivacySection(),
                                                   party=SimpleNamespace(state_dir=str(tmp_path))), _ledgers={})
    policy = PartyAgent._horizontal_policy(agent, job)  # type: ignore[arg-type]  # as the agent builds it
    app = EVALUATION.party_app(PartySetup("bank_a", (train, test), job, policy=policy, state_dir=tmp_path,
                                          deployed=True, options={"secagg": None, "max_evaluations": 20}))
    requests = [Message("run-1", 1, "coordinator", "bank_a", "fit", arrays={"params": np.zeros(4)},
                        meta={"model": MODEL, "train": {"epochs": 1, "batch_size": 1000, "learning_rate": 1.0},
                              "seed": 0}),
                Message("run-1", 0, "coordinator", "bank_a", "describe"),
                Message("run-1", 0, "coordinator", "bank_a", "stats")]
    answered = []
    for request in requests:
        try:
            check_request(allow, "bank_a", request.kind, request.meta, job)
        except (JobRefused, PolicyRefused):
            continue
        reply = app.handle(request)
        if not reply.is_error:
            answered.append((request.kind, dict(reply.meta)))
    assert not answered, f"an evaluation job got training-row releases: {answered}"


@pytest.mark.parametrize("protections", [[], ["secure_aggregation"]])
def test_evaluation_app_mounts_evaluate_and_announced_secagg_only(tmp_path, protections) -> None:
    rng = np.random.default_rng(3)
    job = {"workflow": "evaluation", "parties": ["bank_a", "bank_b"], "protections": protections,
           "model": "logistic"}
    app = EVALUATION.party_app(PartySetup("bank_a", (_data(50, rng), _data(10, rng)), job, state_dir=tmp_path,
                                          options={"secagg": None}))
    secagg = sorted(k for k in app.kinds if k.startswith("secagg_"))
    assert [k for k in app.kinds if not k.startswith("secagg_")] == ["evaluate"]
    assert bool(secagg) == bool(protections)
    for kind in ("fit", "describe", "stats", "hgb.sketch", *(["secagg_keys"] if not protections else [])):
        with pytest.raises(JobRefused, match="evaluation job"):
            check_request(AllowSection(), "bank_a", kind, {}, job)
