"""R14-CONSENT2-6: the spec's `model` (what a standing rule's `model_kinds` and the `sampan consent approve`
summary read) is not compared with the job description's `model` (what the agent enforces on every `fit`): a
coordinator approved under a rule "model_kinds = [logistic]" trains an MLP of its choosing on the party's rows.

Claim (spec.py): a party's consent covers "the model" the job trains; rules.py: a rule covers only its
`model_kinds`. `ConsentDesk._check_spec` cross-checks the job description's workflow, parties, label holder,
operator, protections and rounds with the spec, but not `job["model"]` / `job["hidden"]` against
`spec.model`; `matches` reads `spec.model["kind"]`; `_check_training` reads `job["model"]`.
Fixed: `_check_spec` requires job["model"] == spec.model["kind"] and, for an MLP, job["hidden"] equal to
the spec's model settings.
Suggested fix: `_check_spec` requires `job["model"] == spec.model["kind"]` (and the MLP shape against
`spec.model["settings"]["hidden"]`), or the rules and the CLI summary read the job description's model.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _consent_grant import (  # noqa: E402
    add_local_rule,
    consent_federation,
    feature_count,
    fit,
    gather_approvals,
    loans_spec,
    open_run,
)

from sampan.deploy.consent import JobSpec  # noqa: E402

MLP: dict[str, Any] = {"run": {"name": "mlp", "workflow": "horizontal", "rounds": 2, "seed": 3},
                       "model": {"kind": "mlp", "hidden": [64]},
                       "training": {"learning_rate": 0.1, "epochs": 1},
                       "deploy": {"dataset": "loans", "submitted_by": "ops"}}


def test_a_logistic_only_rule_does_not_approve_an_mlp(tmp_path: Path) -> None:
    with consent_federation(tmp_path) as (_, agents, names):
        victim = agents[names[0]]
        add_local_rule(victim, id="lr-only", model_kinds=["logistic"])
        real = loans_spec(MLP, names, victim.consent.served_columns("loans"), "run-m")
        assert real.job["model"] == "mlp"
        raw = real.model_dump(mode="json")
        raw["model"] = {"kind": "logistic", "settings": {}}  # what the rule (and a person's summary) reads
        spec = JobSpec.model_validate(raw)
        approvals, refused = gather_approvals(agents, names, spec)
        if refused is not None:
            assert not approvals, refused.meta  # the victim (asked first) refused
            return  # the defence: the victim refuses a spec whose model disagrees with its job
        opened = open_run(victim, spec, approvals)
        assert not opened.is_error, opened.meta
        n_features = feature_count(victim, "run-m")
        model = {"kind": "mlp", "n_features": n_features, "hidden": [64]}
        n_params = (n_features + 1) * 64 + 65
        reply = fit(victim, "run-m", 1, np.zeros(n_params), model, dict(spec.job["training"]))
        assert reply.is_error, f"an MLP was trained under the rule 'lr-only': {reply.kind} {reply.meta}"
