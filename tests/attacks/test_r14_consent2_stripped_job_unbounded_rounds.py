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



def test_a_spec_without_rounds_in_its_job_is_not_served_unbounded_rounds(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agents = {name: PartyAgent(load_party_config(path)) for name, path in fed.files.party_configs.items()}
        names = sorted(agents)
        columns = agents[names[0]].consent.served_columns("loans")
        honest = job_spec(EXACT, parties=names, datasets={n: {"dataset": "loans", "columns": columns} for n in names},
                          label_holder=None, operator="ops", job_id="run-s")
        raw = honest.model_dump(mode="json")
        raw["job"] = {k: v for k, v in raw["job"].items() if k not in ("rounds", "training")}
        spec = JobSpec.model_validate(raw)  # spec.rounds still says 2
        assert spec.rounds == 2
        approvals = []
        for name in names:
            reply = agents[name].handle(Message("run-s", 0, "coordinator", name, "consent.request",
                                                meta={"spec": spec.model_dump(mode="json"),
                                                      "decided_by": "operator:ops"}))
            if reply.kind != "consent.approval":
                return  # the defence: a horizontal spec without its rounds/training is refused
            approvals.append(reply.meta["approval"])
        victim = agents[names[0]]
        opened = victim.handle(Message("run-s", 0, "coordinator", names[0], "deploy.open_run", meta={
            "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": spec.job,
            "spec": spec.model_dump(mode="json"), "approvals": approvals}))
        if opened.is_error:
            return
        n_features = len(victim.handle(Message("run-s", 1, "coordinator", names[0], "describe",
                                               meta={})).meta["feature_names"])
        served = 0
        for step in range(1, 9):  # eight exact rounds at 50x the learning rate and 20 local epochs
            reply = victim.handle(Message("run-s", step, "coordinator", names[0], "fit",
                                          arrays={"params": np.full(n_features + 1, 0.1 * step)},
                                          meta={"model": {"kind": "logistic", "n_features": n_features},
                                                "seed": step, "train": {"epochs": 20, "batch_size": 8,
                                                                        "learning_rate": 5.0}}))
            served += reply.kind == "fit_result"
        assert served <= spec.rounds, f"{served} exact model updates served for an approved {spec.rounds}-round job"
    finally:
        fed.coordinator.security.close()



def test_rounds_spelled_as_a_float_still_bound_the_rounds(tmp_path: Path) -> None:
    """The same hole, keeping the training settings: `_check_spec` compares `job["rounds"] != spec.rounds`
    (2.0 == 2 in Python) but `_open_run` builds the gate only `if isinstance(job.get("rounds"), int)`."""
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agents = {name: PartyAgent(load_party_config(path)) for name, path in fed.files.party_configs.items()}
        names = sorted(agents)
        columns = agents[names[0]].consent.served_columns("loans")
        honest = job_spec(EXACT, parties=names, datasets={n: {"dataset": "loans", "columns": columns} for n in names},
                          label_holder=None, operator="ops", job_id="run-f")
        raw = honest.model_dump(mode="json")
        raw["job"] = {**raw["job"], "rounds": 2.0}
        spec = JobSpec.model_validate(raw)
        approvals = []
        for name in names:
            reply = agents[name].handle(Message("run-f", 0, "coordinator", name, "consent.request",
                                                meta={"spec": spec.model_dump(mode="json"),
                                                      "decided_by": "operator:ops"}))
            if reply.kind != "consent.approval":
                return
            approvals.append(reply.meta["approval"])
        victim = agents[names[0]]
        opened = victim.handle(Message("run-f", 0, "coordinator", names[0], "deploy.open_run", meta={
            "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": spec.job,
            "spec": spec.model_dump(mode="json"), "approvals": approvals}))
        if opened.is_error:
            return
        n_features = len(victim.handle(Message("run-f", 1, "coordinator", names[0], "describe",
                                               meta={})).meta["feature_names"])
        served = 0
        for step in range(1, 7):
            reply = victim.handle(Message("run-f", step, "coordinator", names[0], "fit",
                                          arrays={"params": np.full(n_features + 1, 0.1 * step)},
                                          meta={"model": {"kind": "logistic", "n_features": n_features},
                                                "seed": step, "train": dict(spec.job["training"])}))
            served += reply.kind == "fit_result"
        assert served <= 2, f"{served} exact model updates served for an approved 2-round job"
    finally:
        fed.coordinator.security.close()
