"""R14-CONSENT-4: the approved spec's rounds and training settings bind nothing at the party: a coordinator
runs an approved 2-round EXACT (no DP) job for as many rounds, with whatever learning rate and epochs, as it likes.

Claim (spec.py docstring): "a party's consent must cover what the job DOES with its data (... the model, the
rounds ...) and nothing looser, so that a coordinator cannot obtain an approval for one job and run another";
"any change to the config ... voids every approval" (`config_sha256`). But the party never sees the config
(`config_sha256` is the coordinator's own claim, unverifiable at the agent) and, after `deploy.open_run`,
checks each request only against the job description and `[allow]`: `spec.rounds`, `spec.model.settings`
and the run config's [training] are not compared with the `fit` requests. For a DP job the reservation still
bounds the privacy loss; for an exact job (reserves 0, no DP claim) every extra round is one more exact model
update of the party's rows (more gradient-inversion surface) than the party approved.
Fix: the agent enforces spec.rounds (count fits per run, persisted) and checks each request's model/train
settings against the spec (put [training] into the spec and the job description).
Fixed: the job description (so the spec hash) carries the rounds, the local training settings and the MLP
shape; every `fit` is checked against them, and the agent serves at most `rounds` rounds per run (a served
round again only as the very same request), counted under its state folder (`sampan.deploy.run_rounds`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _deploy_federation import ThreadFederation  # noqa: E402

from sampan.deploy.config import load_party_config  # noqa: E402
from sampan.deploy.consent import job_spec  # noqa: E402
from sampan.deploy.party_agent import PartyAgent  # noqa: E402
from sampan.wire import Message  # noqa: E402

EXACT: dict[str, Any] = {"run": {"name": "exact", "workflow": "horizontal", "rounds": 2, "seed": 3},
                         "training": {"learning_rate": 0.1, "epochs": 1},
                         "deploy": {"dataset": "loans", "submitted_by": "ops"}}


def test_an_approved_two_round_job_is_not_served_a_fifth_round(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, start=False, n=300)
    try:
        agents = {name: PartyAgent(load_party_config(path)) for name, path in fed.files.party_configs.items()}
        names = sorted(agents)
        columns = agents[names[0]].consent.served_columns("loans")
        spec = job_spec(EXACT, parties=names, datasets={n: {"dataset": "loans", "columns": columns} for n in names},
                        label_holder=None, operator="ops", job_id="run-r")
        approvals = []
        for name in names:
            reply = agents[name].handle(Message("run-r", 0, "coordinator", name, "consent.request",
                                                meta={"spec": spec.model_dump(mode="json"),
                                                      "decided_by": "operator:ops"}))
            assert reply.kind == "consent.approval", reply.meta
            approvals.append(reply.meta["approval"])
        victim = agents[names[0]]
        opened = victim.handle(Message("run-r", 0, "coordinator", names[0], "deploy.open_run", meta={
            "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": spec.job,
            "spec": spec.model_dump(mode="json"), "approvals": approvals}))
        assert not opened.is_error, opened.meta
        described = victim.handle(Message("run-r", 1, "coordinator", names[0], "describe", meta={}))
        n_features = len(described.meta["feature_names"])  # categories one-hot encoded
        served = 0
        for step in range(1, 6):  # five rounds, at 50x the approved learning rate and 20 local epochs
            reply = victim.handle(Message("run-r", step, "coordinator", names[0], "fit",
                                          arrays={"params": np.zeros(n_features + 1)},
                                          meta={"model": {"kind": "logistic", "n_features": n_features},
                                                "seed": step, "train": {"epochs": 20, "batch_size": 32,
                                                                        "learning_rate": 5.0}}))
            served += reply.kind == "fit_result"
        assert served <= spec.rounds, f"{served} exact model updates served for an approved {spec.rounds}-round job"
        # the approved settings: two rounds served, a served round again only as the same request, no third
        train = dict(spec.job["training"])
        model = {"kind": "logistic", "n_features": n_features}

        def fit(step: int, params: np.ndarray) -> Message:
            return victim.handle(Message("run-r", step, "coordinator", names[0], "fit", arrays={"params": params},
                                         meta={"model": model, "seed": step, "train": train}))

        assert [fit(s, np.zeros(n_features + 1)).kind for s in (1, 2)] == ["fit_result"] * 2
        assert fit(1, np.zeros(n_features + 1)).kind == "fit_result"  # a resumed coordinator re-sends round 1
        assert fit(1, np.ones(n_features + 1)).is_error  # round 1 again, at other parameters: a new update
        third = fit(3, np.zeros(n_features + 1))
        assert third.is_error and "rounds" in str(third.meta), third.meta
        restarted = PartyAgent(load_party_config(fed.files.party_configs[names[0]]))  # the count survives a restart
        reopened = restarted.handle(Message("run-r", 0, "coordinator", names[0], "deploy.open_run", meta={
            "workflow": "horizontal", "dataset": "loans", "test_fraction": 0.2, "split_seed": 1, "job": spec.job,
            "spec": spec.model_dump(mode="json"), "approvals": approvals}))
        assert not reopened.is_error, reopened.meta
        victim = restarted
        assert fit(1, np.zeros(n_features + 1)).kind == "fit_result"
        assert "rounds" in str(fit(3, np.zeros(n_features + 1)).meta)
    finally:
        fed.coordinator.security.close()
