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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _consent_grant import EXACT, consent_federation, feature_count, fit, gather_approvals, loans_spec, open_run  # noqa: E402

from sampan.deploy.config import load_party_config  # noqa: E402
from sampan.deploy.party_agent import PartyAgent  # noqa: E402
from sampan.wire import Message  # noqa: E402


def test_an_approved_two_round_job_is_not_served_a_fifth_round(tmp_path: Path) -> None:
    with consent_federation(tmp_path) as (fed, agents, names):
        spec = loans_spec(EXACT, names, agents[names[0]].consent.served_columns("loans"), "run-r")
        approvals, refused = gather_approvals(agents, names, spec)
        assert refused is None, refused.meta
        victim = agents[names[0]]
        opened = open_run(victim, spec, approvals)
        assert not opened.is_error, opened.meta
        n_features = feature_count(victim, "run-r")  # categories one-hot encoded
        model = {"kind": "logistic", "n_features": n_features}
        served = 0
        for step in range(1, 6):  # five rounds, at 50x the approved learning rate and 20 local epochs
            reply = fit(victim, "run-r", step, np.zeros(n_features + 1), model,
                        {"epochs": 20, "batch_size": 32, "learning_rate": 5.0})
            served += reply.kind == "fit_result"
        assert served <= spec.rounds, f"{served} exact model updates served for an approved {spec.rounds}-round job"
        # the approved settings: two rounds served, a served round again only as the same request, no third
        train = dict(spec.job["training"])

        def approved_fit(step: int, params: np.ndarray) -> Message:
            return fit(victim, "run-r", step, params, model, train)

        assert [approved_fit(s, np.zeros(n_features + 1)).kind for s in (1, 2)] == ["fit_result"] * 2
        assert approved_fit(1, np.zeros(n_features + 1)).kind == "fit_result"  # a resumed coordinator re-sends round 1
        assert approved_fit(1, np.ones(n_features + 1)).is_error  # round 1 again, at other parameters: a new update
        third = approved_fit(3, np.zeros(n_features + 1))
        assert third.is_error and "rounds" in str(third.meta), third.meta
        restarted = PartyAgent(load_party_config(fed.files.party_configs[names[0]]))  # the count survives a restart
        reopened = open_run(restarted, spec, approvals)
        assert not reopened.is_error, reopened.meta
        victim = restarted
        assert approved_fit(1, np.zeros(n_features + 1)).kind == "fit_result"
        assert "rounds" in str(approved_fit(3, np.zeros(n_features + 1)).meta)
