"""R14-CONSENT3-6: a horizontal spec with NO model kind (`spec.model = {}`) and a job description with no `model`
passes `check_spec` (None == None) and then `check_training` checks no model at all (`job.get("model") is None`:
the kind and the MLP shape are skipped): every `fit` trains whatever model the coordinator names, e.g. a wide MLP.

Claim (consent_spec_check.py, R14-CONSENT2-6 fixed): "what rules and the summary read (spec.model) is what each
`fit` builds (job["model"])"; allow_training.check_training: "A `fit` trains exactly as approved: the job's local
training settings and model kind". A missing key defaults to "anything": a rule without `model_kinds` (or the
implicit `[allow]` rule) approves a job whose summary shows no model, and the party trains a 512-unit MLP.
Suggested fix: `check_spec` requires a horizontal job's `job["model"]` to be a known kind (logistic, mlp, gbdt)
equal to `spec.model["kind"]`; `check_training` refuses a `fit` when the job names no model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _consent_grant import EXACT, consent_federation, feature_count, fit, gather_approvals, loans_spec, open_run  # noqa: E402

from sampan.deploy.consent import JobSpec  # noqa: E402


def test_a_job_naming_no_model_trains_no_model_of_the_coordinators_choice(tmp_path: Path) -> None:
    with consent_federation(tmp_path) as (_, agents, names):
        victim = agents[names[0]]
        honest = loans_spec(EXACT, names, victim.consent.served_columns("loans"), "run-x")
        raw = honest.model_dump(mode="json")
        raw["model"] = {}
        del raw["job"]["model"]
        spec = JobSpec.model_validate(raw)
        approvals, refused = gather_approvals(agents, names, spec)
        if refused is not None:
            assert not approvals, refused.meta  # the victim (asked first) refused
            return  # the defence: a job naming no model is refused
        if open_run(victim, spec, approvals).is_error:
            return  # the defence at opening
        n_features = feature_count(victim, "run-x")
        model = {"kind": "mlp", "n_features": n_features, "hidden": [512]}
        n_params = (n_features + 1) * 512 + 513
        reply = fit(victim, "run-x", 1, np.zeros(n_params), model, dict(spec.job["training"]))
        assert reply.is_error, f"a 512-unit MLP was trained in a job that names no model: {reply.kind}"
