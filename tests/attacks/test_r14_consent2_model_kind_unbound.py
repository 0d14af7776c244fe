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

from _deploy_federation import ThreadFederation  # noqa: E402

from sampan.deploy.config import load_party_config  # noqa: E402
from sampan.deploy.consent import JobSpec, StandingRule, job_spec  # noqa: E402
from sampan.deploy.party_agent import PartyAgent  # noqa: E402
from sampan.wire import Message  # noqa: E402

MLP: dict[str, Any] = {"run": {"name": "mlp", "workflow": "horizontal", "rounds": 2, "seed": 3},
                       "model": {"kind": "mlp", "hidden": [64]},
                       "training": {"learning_rate": 0.1, "epochs": 1},
                       "deploy": {"dataset": "loans", "submitted_by": "ops"}}



def test_a_logistic_only_rule_does_not_approve_an_mlp(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agents = {name: PartyAgent(load_party_config(path)) for name, path in fed.files.party_configs.items()}
        names = sorted(agents)
        victim = agents[names[0]]
        victim.consent.add_rule(StandingRule(id="lr-only", party=names[0], dataset="loans",
                                             model_kinds=["logistic"]).model_dump(mode="json"),
                                "person:alice", relayed=False)
        columns = victim.consent.served_columns("loans")
        real = job_spec(MLP, parties=names, datasets={n: {"dataset": "loans", "columns": columns} for n in names},
                        label_holder=None, operator="ops", job_id="run-m")
        assert real.job["model"] == "mlp"
        raw = real.model_dump(mode="json")
        raw["model"] = {"kind": "logistic", "settings": {}}  # what the rule (and a person's summary) reads
        spec = JobSpec.model_validate(raw)
        approvals = []
        for name in names:
            reply = agents[name].handle(Message("run-m", 0, "coordinator", name, "consent.request",
                                                meta={"spec": spec.model_dump(mode="json"),
                                                      "decided_by": "operator:ops"}))
            if reply.kind != "consent.approval":
                assert name == names[0], reply.meta
                return  # the defence: the victim refuses a spec whose model disagrees with its job
            approvals.append(reply.meta["approval"])
        opened = victim.handle(Message("run-m", 0, "coordinator", names[0], "deploy.open_run", meta={
            "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": spec.job,
            "spec": spec.model_dump(mode="json"), "approvals": approvals}))
        assert not opened.is_error, opened.meta
        n_features = len(victim.handle(Message("run-m", 1, "coordinator", names[0], "describe",
                                               meta={})).meta["feature_names"])
        model = {"kind": "mlp", "n_features": n_features, "hidden": [64]}
        n_params = (n_features + 1) * 64 + 65
        reply = victim.handle(Message("run-m", 1, "coordinator", names[0], "fit",
                                      arrays={"params": np.zeros(n_params)},
                                      meta={"model": model, "seed": 1, "train": dict(spec.job["training"])}))
        assert reply.is_error, f"an MLP was trained under the rule 'lr-only': {reply.kind} {reply.meta}"
    finally:
        fed.coordinator.security.close()
