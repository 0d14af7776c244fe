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
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _deploy_federation import ThreadFederation  # noqa: E402

from sampan.deploy.config import load_party_config  # noqa: E402
from sampan.deploy.consent import JobSpec, job_spec  # noqa: E402
from sampan.deploy.party_agent import PartyAgent  # noqa: E402
from sampan.wire import Message  # noqa: E402

EXACT: dict[str, Any] = {"run": {"name": "exact", "workflow": "horizontal", "rounds": 2, "seed": 3},
                         "training": {"learning_rate": 0.1, "epochs": 1},
                         "deploy": {"dataset": "loans", "submitted_by": "ops"}}


def test_a_job_naming_no_model_trains_no_model_of_the_coordinators_choice(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agents = {name: PartyAgent(load_party_config(path)) for name, path in fed.files.party_configs.items()}
        names = sorted(agents)
        victim = agents[names[0]]
        columns = victim.consent.served_columns("loans")
        honest = job_spec(EXACT, parties=names, datasets={n: {"dataset": "loans", "columns": columns} for n in names},
                          label_holder=None, operator="ops", job_id="run-x")
        raw = honest.model_dump(mode="json")
        raw["model"] = {}
        del raw["job"]["model"]
        spec = JobSpec.model_validate(raw)
        approvals = []
        for name in names:
            reply = agents[name].handle(Message("run-x", 0, "coordinator", name, "consent.request",
                                                meta={"spec": spec.model_dump(mode="json"),
                                                      "decided_by": "operator:ops"}))
            if reply.kind != "consent.approval":
                assert name == names[0], reply.meta
                return  # the defence: a job naming no model is refused
            approvals.append(reply.meta["approval"])
        opened = victim.handle(Message("run-x", 0, "coordinator", names[0], "deploy.open_run", meta={
            "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": spec.job,
            "spec": spec.model_dump(mode="json"), "approvals": approvals}))
        if opened.is_error:
            return  # the defence at opening
        n_features = len(victim.handle(Message("run-x", 1, "coordinator", names[0], "describe",
                                               meta={})).meta["feature_names"])
        model = {"kind": "mlp", "n_features": n_features, "hidden": [512]}
        n_params = (n_features + 1) * 512 + 513
        reply = victim.handle(Message("run-x", 1, "coordinator", names[0], "fit",
                                      arrays={"params": np.zeros(n_params)},
                                      meta={"model": model, "seed": 1, "train": dict(spec.job["training"])}))
        assert reply.is_error, f"a 512-unit MLP was trained in a job that names no model: {reply.kind}"
    finally:
        fed.coordinator.security.close()
