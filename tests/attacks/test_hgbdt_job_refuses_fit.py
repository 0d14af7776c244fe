"""R13-HGB-4: a horizontal GBDT job announced with DP must not answer a `fit` (an exact update would leave).

A gbdt job mounted the bank's ordinary horizontal handlers too (`HorizontalParty.core_handlers`: describe, stats,
impute_stats, fit, evaluate), and the deploy gate (`_check_fit`) compared a fit's dp2/dp3 with the job's announced
dp2/dp3 (none in a tree job, whose protections are ['dp', 'gbdt_dp']). So a coordinator could ask a bank whose
allow list requires nothing or only `gbdt_dp` for a logistic `fit` on its training rows, trained without DP-SGD,
and receive the exact update, uncharged, in a run whose receipt says every release is noised. Now a gbdt job
mounts only `describe` and `evaluate` next to its tree handlers, and the deploy gate refuses any other request
kind (fit, stats, impute_stats, secagg_*) in a horizontal gbdt job.
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.config import parse_config
from sampan.core.capability import PartySetup
from sampan.data import PartyData
from sampan.deploy.allow import AllowSection, JobRefused, check_request, job_description
from sampan.horizontal.capability import HORIZONTAL
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.wire import Message

FIT = {"model": {"kind": "logistic", "n_features": 3}, "seed": 1,
       "train": {"epochs": 1, "batch_size": 8, "learning_rate": 0.1}}


def _job() -> dict:
    config = parse_config({"run": {"name": "d", "rounds": 1}, "source": {"kind": "consortium", "n_smes": 600},
                           "model": {"kind": "gbdt", "n_trees": 4, "max_depth": 2},
                           "privacy": {"epsilon": 5.0, "gbdt": {"noise_multiplier": 2.0, "bounds": {"*": [0, 1]}}}})
    return job_description(config.to_dict(), workflow="horizontal", operator=None, parties=["a", "b", "c"],
                           label_holder=None)


def test_a_bank_in_a_dp_tree_job_refuses_a_fit_without_dp() -> None:
    rng = np.random.default_rng(4)
    data = PartyData(party="a", ids=np.array([f"r{i}" for i in range(40)], dtype=object),
                     X=rng.normal(size=(40, 3)), y=(rng.random(40) < 0.4).astype(np.int8),
                     feature_names=["f0", "f1", "f2"])
    policy = PartyPrivacyPolicy(required_levels=frozenset({"GBDT"}))  # what `[allow] require = ["gbdt_dp"]` gives
    app = HORIZONTAL.party_app(PartySetup("a", (data, data.subset(np.arange(5))), _job(), policy=policy))
    reply = app.handle(Message("run", 1, "coordinator", "a", "fit", {"params": np.zeros(4)}, FIT))
    assert reply.is_error, f"an exact update left: {list(reply.arrays)}"


def test_the_deploy_gate_refuses_a_fit_without_dp_in_a_dp_tree_job() -> None:
    job = _job()
    assert {"dp", "gbdt_dp"} <= set(job["protections"])
    for kind in ("fit", "stats", "impute_stats"):
        with pytest.raises(JobRefused):
            check_request(AllowSection(require=["gbdt_dp"]), "a", kind, FIT, job)
