"""R14-CONSENT3-1: the training terms the agent enforces on every `fit` (`spec.job["training"]`) are the
coordinator's text and nothing a party's decision reads pins them: no standing rule field, no `[allow]` limit,
not the `sampan consent approve` summary, and `check_spec` only requires `job["training"]` to be a dict.

Claim (allow_training.py, review R14-CONSENT2-2 fixed): "a party approves a job trained with certain settings;
a `fit` asking for others (..., class weights that make the update a statistic of one label's rows, a proximal
term) releases something the party never approved". A coordinator writes `class_weight = [1e-4, 1e4]` (and
FedProx's proximal_mu) straight into the job description of the spec it submits: the party's standing rule
(here the implicit `[allow]` rule) approves it, the per-`fit` check then *accepts* the extreme weighting because
it is the "approved" term, and the update released is (almost) the gradient over the defaulters' rows only.
The job's audit record (`job["class_weight"]`, absent) still says the job trains unweighted.
Suggested fix: the spec pins the training terms where decisions read them (a `training` field that rules can
bound — e.g. `class_weights = false`/max ratio, max epochs/lr — and the CLI summary shows), and `check_spec`
refuses a job whose `training` disagrees with the spec's (and with `job["class_weight"]`); at minimum refuse
explicit class weights and proximal_mu unless a rule or a person's decision names them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _consent_grant import EXACT, consent_federation, feature_count, fit, gather_approvals, loans_spec, open_run  # noqa: E402

from sampan.deploy.consent import JobSpec  # noqa: E402


def test_rule_approved_spec_cannot_carry_extreme_class_weights(tmp_path: Path) -> None:
    with consent_federation(tmp_path) as (_, agents, names):
        victim = agents[names[0]]
        honest = loans_spec(EXACT, names, victim.consent.served_columns("loans"), "run-cw")
        raw = honest.model_dump(mode="json")
        assert raw["job"]["training"]["class_weight"] is None and "class_weight" not in raw["job"]
        raw["job"]["training"]["class_weight"] = [1e-4, 1e4]  # the coordinator's own text
        spec = JobSpec.model_validate(raw)
        approvals, refused = gather_approvals(agents, names, spec)
        if refused is not None:
            assert not approvals, refused.meta  # the victim (asked first) refused
            return  # the defence: the victim refuses training terms no decision of its covered
        opened = open_run(victim, spec, approvals)
        assert not opened.is_error, opened.meta
        n_features = feature_count(victim, "run-cw")
        reply = fit(victim, "run-cw", 1, np.zeros(n_features + 1), {"kind": "logistic", "n_features": n_features},
                    dict(spec.job["training"]))
        assert reply.is_error, "a fit weighting the positive rows 10^8 times more was approved by a rule and answered"
