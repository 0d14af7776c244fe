"""R14-CONSENT2-1: a coordinator that leaves `rounds` and `training` out of the spec's job description gets an
approval (rules mode, operator submit) and then serves itself unlimited exact `fit` rounds at any settings.

Claim (run_rounds.py / allow_requests._check_training, review R14-CONSENT-4 fixed): "the agent serves at most
`rounds` rounds per run" and "a `fit` trains exactly as approved". But the round gate is built only
`if isinstance(job.get("rounds"), int) and "training" in job`, `_check_training` runs only when the job
description carries `training`, and `ConsentDesk._check_spec` compares `job["rounds"]` with `spec.rounds` only
`if "rounds" in job`. The job description is the coordinator's text: it simply omits both keys, the agent
approves the spec (its hash covers the stripped description), opens the run, and answers every `fit`.
Fixed: `_check_spec` requires an int job["rounds"] equal to spec.rounds and a training table for a
horizontal non-GBDT job; the round gate is built from the admitted spec's rounds.
Suggested fix: for a horizontal non-GBDT job, `_check_spec` must REQUIRE `job["rounds"] == spec.rounds` and a `training`
table (refuse the spec otherwise), and `open_run` must build the gate from `spec.rounds` (never from the
coordinator-supplied description).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _consent_grant import EXACT, consent_federation, feature_count, fit, gather_approvals, loans_spec, open_run  # noqa: E402

from sampan.deploy.consent import JobSpec  # noqa: E402


def test_a_spec_without_rounds_in_its_job_is_not_served_unbounded_rounds(tmp_path: Path) -> None:
    with consent_federation(tmp_path) as (_, agents, names):
        honest = loans_spec(EXACT, names, agents[names[0]].consent.served_columns("loans"), "run-s")
        raw = honest.model_dump(mode="json")
        raw["job"] = {k: v for k, v in raw["job"].items() if k not in ("rounds", "training")}
        spec = JobSpec.model_validate(raw)  # spec.rounds still says 2
        assert spec.rounds == 2
        approvals, refused = gather_approvals(agents, names, spec)
        if refused is not None:
            return  # the defence: a horizontal spec without its rounds/training is refused
        victim = agents[names[0]]
        if open_run(victim, spec, approvals).is_error:
            return
        n_features = feature_count(victim, "run-s")
        served = 0
        for step in range(1, 9):  # eight exact rounds at 50x the learning rate and 20 local epochs
            reply = fit(victim, "run-s", step, np.full(n_features + 1, 0.1 * step),
                        {"kind": "logistic", "n_features": n_features},
                        {"epochs": 20, "batch_size": 8, "learning_rate": 5.0})
            served += reply.kind == "fit_result"
        assert served <= spec.rounds, f"{served} exact model updates served for an approved {spec.rounds}-round job"


def test_rounds_spelled_as_a_float_still_bound_the_rounds(tmp_path: Path) -> None:
    """The same hole, keeping the training settings: `_check_spec` compares `job["rounds"] != spec.rounds`
    (2.0 == 2 in Python) but `_open_run` builds the gate only `if isinstance(job.get("rounds"), int)`."""
    with consent_federation(tmp_path) as (_, agents, names):
        honest = loans_spec(EXACT, names, agents[names[0]].consent.served_columns("loans"), "run-f")
        raw = honest.model_dump(mode="json")
        raw["job"] = {**raw["job"], "rounds": 2.0}
        spec = JobSpec.model_validate(raw)
        approvals, refused = gather_approvals(agents, names, spec)
        if refused is not None:
            return
        victim = agents[names[0]]
        if open_run(victim, spec, approvals).is_error:
            return
        n_features = feature_count(victim, "run-f")
        served = 0
        for step in range(1, 7):
            reply = fit(victim, "run-f", step, np.full(n_features + 1, 0.1 * step),
                        {"kind": "logistic", "n_features": n_features}, dict(spec.job["training"]))
            served += reply.kind == "fit_result"
        assert served <= 2, f"{served} exact model updates served for an approved 2-round job"
