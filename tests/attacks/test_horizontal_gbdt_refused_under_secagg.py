"""Review (issue 12, horizontal capability / deploy gate): a party whose `[allow] require` lists
"secure_aggregation" promises that its per-party training outputs reach the coordinator only as sums over
several banks (README: "with [secure_aggregation] it sees only sums over at least 3 parties").

R12-HOR-2: a coordinator announces a horizontal job with ``model = "gbdt"`` and ``protections =
["secure_aggregation"]`` (so `check_job` finds every required protection). The capability mounts the tree
handlers because the party's policy requires no *DP* level (`HorizontalCapability.party_app` checks only
`policy.requires_dp()`), and `check_request` returns early for every ``hgb.*`` kind in a gbdt job, never
checking `require`. The party then answers ``hgb.sketch`` with its exact row count, exact positive count and
exact per-feature quantiles (and ``hgb.hist`` with exact per-node gradient histograms), per party, in clear:
horizontal GBDT has no secure aggregation at all (`gbdt_workflow` docstring). The job's announced
"secure_aggregation" is a lie the party cannot notice, and its own requirement is bypassed.
Fix: refuse (at open and per request) a gbdt job when the list requires secure_aggregation, and a gbdt job
that announces secure_aggregation (the mechanism does not exist for trees).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sampan.core.capability import PartySetup
from sampan.data import PartyData
from sampan.deploy.allow import AllowSection, JobRefused, check_job, check_request
from sampan.deploy.config import PartyPrivacySection
from sampan.deploy.party_agent import PartyAgent
from sampan.horizontal.capability import HORIZONTAL
from sampan.privacy.party_policy import PolicyRefused
from sampan.wire import Message

FEATURES = ["f0", "f1", "f2"]


def _data(n: int, rng: np.random.Generator) -> PartyData:
    return PartyData(party="bank_a", ids=np.array([f"r{i}" for i in range(n)], dtype=object),
                     X=rng.normal(size=(n, 3)), y=(rng.random(n) < 0.3).astype(np.int8), feature_names=FEATURES)


def test_party_requiring_secagg_refuses_exact_tree_histograms(tmp_path) -> None:
    allow = AllowSection(require=["secure_aggregation"])
    job = {"workflow": "horizontal", "operator": None, "parties": ["bank_a", "bank_b", "bank_c"],
           "label_holder": None, "protections": ["secure_aggregation"], "noise_multipliers": {},
           "secagg_min_contributors": 3, "model": "gbdt"}
    rng = np.random.default_rng(1)
    train, test = _data(90, rng), _data(10, rng)
    answered = None
    try:
        check_job(allow, "bank_a", job, "loans", FEATURES)
        # the policy exactly as the deployed agent builds it for this job (`PartyAgent._horizontal_policy`)
        agent = SimpleNamespace(config=SimpleNamespace(allow=allow, privacy=PartyPrivacySection(),
                                                       party=SimpleNamespace(state_dir=str(tmp_path))), _ledgers={})
        policy = PartyAgent._horizontal_policy(agent, job)  # type: ignore[arg-type]
        app = HORIZONTAL.party_app(PartySetup("bank_a", (train, test), job, policy=policy, state_dir=tmp_path,
                                              deployed=True, options={"secagg": None}))
        request = Message("run-1", 0, "coordinator", "bank_a", "hgb.sketch", meta={"n_bins": 256})
        check_request(allow, "bank_a", request.kind, request.meta, job)
        reply = app.handle(request)
        answered = None if reply.is_error else reply
    except (JobRefused, PolicyRefused):
        pass
    assert answered is None, (f"exact per-party tree statistics left a party that requires secure aggregation: "
                              f"n={answered.meta['n']}, positives={answered.meta['events']}, quantiles of "
                              f"shape {answered.arrays['quantiles'].shape}")


def test_each_layer_refuses_trees_under_secure_aggregation(tmp_path) -> None:
    """The gate at open, the gate per request and the party's own app refuse, each without the others."""
    rng = np.random.default_rng(1)
    train, test = _data(90, rng), _data(10, rng)
    job = {"workflow": "horizontal", "operator": None, "parties": ["bank_a", "bank_b", "bank_c"],
           "label_holder": None, "protections": ["secure_aggregation"], "noise_multipliers": {},
           "secagg_min_contributors": 3, "model": "gbdt"}
    with pytest.raises(JobRefused, match="GBDT"):
        check_job(AllowSection(), "bank_a", job, "loans", FEATURES)  # a job claiming SecAgg for trees
    with pytest.raises(JobRefused, match="secure_aggregation"):  # a party requiring SecAgg, a job without it
        check_job(AllowSection(require=["secure_aggregation"]), "bank_a", {**job, "protections": []}, "loans", FEATURES)
    for allow, claimed in ((AllowSection(), job), (AllowSection(require=["secure_aggregation"]),
                                                   {**job, "protections": []})):
        with pytest.raises(JobRefused, match="secure aggregation"):
            check_request(allow, "bank_a", "hgb.hist", {}, claimed)
    with pytest.raises(PolicyRefused, match="secure aggregation"):
        HORIZONTAL.party_app(PartySetup("bank_a", (train, test), job, state_dir=tmp_path, options={"secagg": None}))
