"""R14-CONSENT2-2: the per-`fit` training check covers epochs, steps, batch size, learning rate, optimizer,
momentum and l2, but not `class_weight` or `proximal_mu`, which the party trains with as the request says.

Claim (allow_requests._check_training, review R14-CONSENT-4 fixed): "A `fit` trains exactly as approved". A
coordinator holding an approval of an unweighted exact job sends `class_weight = [1e-4, 1e4]`: the update the
party returns is (almost) the gradient over its positive-label rows only (the defaulters), a statistic of a
sub-population the party never approved releasing; `proximal_mu` likewise changes the update. The approved
config's `[training] class_weight` is put in the job description (`extra["class_weight"]`) for the audit
record only: nothing compares it with the request either.
Fixed: training terms carry the resolved class weights ("pooled" where resolved at run time) and
proximal_mu; `_check_training` compares every TrainConfig key and refuses unknown keys.
Suggested fix: `training_terms` carries the resolved class weights (or None) and proximal_mu, and `_check_training`
compares every key of `TrainConfig` (refuse any key the approved job does not spell, including unknown ones).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _deploy_federation import ThreadFederation  # noqa: E402

from sampan.deploy.config import load_party_config  # noqa: E402
from sampan.deploy.consent import job_spec  # noqa: E402
from sampan.deploy.party_agent import PartyAgent  # noqa: E402
from sampan.wire import Message  # noqa: E402

EXACT: dict[str, Any] = {"run": {"name": "exact", "workflow": "horizontal", "rounds": 2, "seed": 3},
                         "training": {"learning_rate": 0.1, "epochs": 1},
                         "deploy": {"dataset": "loans", "submitted_by": "ops"}}



def test_fit_with_unapproved_class_weights_is_refused(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agents = {name: PartyAgent(load_party_config(path)) for name, path in fed.files.party_configs.items()}
        names = sorted(agents)
        columns = agents[names[0]].consent.served_columns("loans")
        spec = job_spec(EXACT, parties=names, datasets={n: {"dataset": "loans", "columns": columns} for n in names},
                        label_holder=None, operator="ops", job_id="run-w")
        approvals = []
        for name in names:
            reply = agents[name].handle(Message("run-w", 0, "coordinator", name, "consent.request",
                                                meta={"spec": spec.model_dump(mode="json"),
                                                      "decided_by": "operator:ops"}))
            assert reply.kind == "consent.approval", reply.meta
            approvals.append(reply.meta["approval"])
        victim = agents[names[0]]
        opened = victim.handle(Message("run-w", 0, "coordinator", names[0], "deploy.open_run", meta={
            "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": spec.job,
            "spec": spec.model_dump(mode="json"), "approvals": approvals}))
        assert not opened.is_error, opened.meta
        n_features = len(victim.handle(Message("run-w", 1, "coordinator", names[0], "describe",
                                               meta={})).meta["feature_names"])
        assert "class_weight" not in spec.job  # the approved job trains unweighted
        train = {**spec.job["training"], "class_weight": [1e-4, 1e4], "proximal_mu": 5.0}
        reply = victim.handle(Message("run-w", 1, "coordinator", names[0], "fit",
                                      arrays={"params": np.zeros(n_features + 1)},
                                      meta={"model": {"kind": "logistic", "n_features": n_features}, "seed": 1,
                                            "train": train}))
        assert reply.is_error, "a fit weighting the positive rows 10^8 times more was trained and answered"
    finally:
        fed.coordinator.security.close()
