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


def test_rule_approved_spec_cannot_carry_extreme_class_weights(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agents = {name: PartyAgent(load_party_config(path)) for name, path in fed.files.party_configs.items()}
        names = sorted(agents)
        victim = agents[names[0]]
        columns = victim.consent.served_columns("loans")
        honest = job_spec(EXACT, parties=names, datasets={n: {"dataset": "loans", "columns": columns} for n in names},
                          label_holder=None, operator="ops", job_id="run-cw")
        raw = honest.model_dump(mode="json")
        assert raw["job"]["training"]["class_weight"] is None and "class_weight" not in raw["job"]
        raw["job"]["training"]["class_weight"] = [1e-4, 1e4]  # the coordinator's own text
        spec = JobSpec.model_validate(raw)
        approvals = []
        for name in names:
            reply = agents[name].handle(Message("run-cw", 0, "coordinator", name, "consent.request",
                                                meta={"spec": spec.model_dump(mode="json"),
                                                      "decided_by": "operator:ops"}))
            if reply.kind != "consent.approval":
                assert name == names[0], reply.meta
                return  # the defence: the victim refuses training terms no decision of its covered
            approvals.append(reply.meta["approval"])
        opened = victim.handle(Message("run-cw", 0, "coordinator", names[0], "deploy.open_run", meta={
            "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": spec.job,
            "spec": spec.model_dump(mode="json"), "approvals": approvals}))
        assert not opened.is_error, opened.meta
        n_features = len(victim.handle(Message("run-cw", 1, "coordinator", names[0], "describe",
                                               meta={})).meta["feature_names"])
        reply = victim.handle(Message("run-cw", 1, "coordinator", names[0], "fit",
                                      arrays={"params": np.zeros(n_features + 1)},
                                      meta={"model": {"kind": "logistic", "n_features": n_features}, "seed": 1,
                                            "train": dict(spec.job["training"])}))
        assert reply.is_error, "a fit weighting the positive rows 10^8 times more was approved by a rule and answered"
    finally:
        fed.coordinator.security.close()
