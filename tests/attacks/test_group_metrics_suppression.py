"""A curious coordinator tries to learn single holdout records through the per-group release (issue 13 item 8).

Claims (`sampan.horizontal.group_evaluation`, `sampan.privacy.group_release_mod`): without DP a party zeroes and
names every group level it holds fewer than 10 holdout rows of; it answers one group request per run, only after
the run's evaluation and never under secure aggregation; under DP it refuses un-noised counts, noises them with a
charged Gaussian mechanism, and a repeat gets the same release back (no fresh noise to average away). The
coordinator here builds its own requests through the public message API; each attempt fails.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sampan.core.party import PartyApp
from sampan.data import PartyData
from sampan.horizontal.group_evaluation import EVALUATE_GROUPS, GROUP_BINS, mount_groups
from sampan.horizontal.party import HorizontalParty
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.wire import Message

NAMES = ["sector=a", "sector=b", "sector=solo", "age"]
MODEL = {"kind": "logistic", "n_features": 4}
PARAMS = np.array([0.5, -0.5, 2.0, 0.1, 0.0])


def _data(n: int, seed: int) -> PartyData:
    rng = np.random.default_rng(seed)
    sector = rng.integers(0, 2, n)
    sector[0] = 2  # the only holdout record of sector "solo"
    age = rng.uniform(0, 20, n)
    age[1] = 99.0  # the only record this old
    X = np.column_stack([np.eye(3)[sector], age])
    return PartyData("bank", np.array([f"r{i}" for i in range(n)], dtype=object), X, (rng.random(n) < 0.3)
                     .astype(np.int8), NAMES)


def _app(policy: PartyPrivacyPolicy | None = None) -> PartyApp:
    party = HorizontalParty("bank", _data(200, 1), _data(120, 2), policy)
    app = PartyApp("bank", mods=list(party.mods))
    for kind, handler in party.core_handlers().items():
        app.register(kind, handler)
    mount_groups(app, party)
    return app


def _ask(app: PartyApp, kind: str, run: str = "run-1", **meta: Any) -> Message:
    return app.handle(Message(run, 3, "coordinator", "bank", kind, arrays={"params": PARAMS},
                              meta={"model": MODEL, **meta}))


SOLO = [{"column": "sector", "levels": ["sector=a", "sector=b", "sector=solo"]}]
OLDEST = [{"column": "age", "feature": "age", "cuts": [98.5, 99.5]}]  # a band around one record's value


@pytest.mark.parametrize("groups", [SOLO, OLDEST], ids=["one-record category", "one-record band"])
def test_a_group_of_one_record_is_withheld(groups: list[dict[str, Any]]) -> None:
    app = _app()
    assert _ask(app, "evaluate").kind == "evaluation"
    reply = _ask(app, EVALUATE_GROUPS, groups=groups, bins=GROUP_BINS)
    assert reply.kind == "group_evaluation"
    counts = reply.arrays["pos"] + reply.arrays["neg"]
    withheld = reply.meta["withheld"]
    assert withheld and all(counts[i].sum() == 0 for i in withheld)  # nothing of the lone record leaves
    assert all(counts[i].sum() >= 10 for i in range(len(counts)) if i not in withheld)
    assert counts.sum() < 120  # the small levels are missing from what left


def test_one_group_request_per_run_and_only_after_its_evaluation() -> None:
    app = _app()
    early = _ask(app, EVALUATE_GROUPS, groups=SOLO, bins=GROUP_BINS)
    assert early.is_error and "after the run's evaluation" in early.meta["error"]
    _ask(app, "evaluate")
    assert _ask(app, EVALUATE_GROUPS, groups=SOLO, bins=GROUP_BINS).kind == "group_evaluation"
    # a second grouping of the same rows (differencing two bandings isolates records): refused
    again = _ask(app, EVALUATE_GROUPS, groups=OLDEST, bins=GROUP_BINS)
    assert again.is_error and "one group evaluation per run" in again.meta["error"]


def test_bad_requests_are_refused_before_any_count() -> None:
    app = _app()
    _ask(app, "evaluate")
    for meta, needle in (({"groups": SOLO, "bins": GROUP_BINS, "secagg": {"label": "x"}}, "secure aggregation"),):
        reply = _ask(app, EVALUATE_GROUPS, **meta)
        assert reply.is_error and needle in reply.meta["error"]
    fine_bins = _ask(_evaluated(), EVALUATE_GROUPS, groups=SOLO, bins=2000)
    assert fine_bins.is_error and "exactly 100" in fine_bins.meta["error"]
    unknown = _ask(_evaluated(), EVALUATE_GROUPS, groups=[{"column": "x", "levels": ["district=1"]}], bins=GROUP_BINS)
    assert unknown.is_error and "unknown columns" in unknown.meta["error"]


def _evaluated(policy: PartyPrivacyPolicy | None = None) -> PartyApp:
    app = _app(policy)
    assert _ask(app, "evaluate").kind == "evaluation"
    return app


def test_under_dp_counts_are_noised_charged_and_not_replayable() -> None:
    policy = PartyPrivacyPolicy(required_levels=frozenset({"DP"}))
    app = _evaluated(policy)
    bare = _ask(app, EVALUATE_GROUPS, groups=SOLO, bins=GROUP_BINS)
    assert bare.is_error and "must be noised" in bare.meta["error"]

    app = _evaluated(policy)
    reply = _ask(app, EVALUATE_GROUPS, groups=SOLO, bins=GROUP_BINS, group_dp={"noise_multiplier": 2.0})
    assert reply.kind == "group_evaluation" and reply.meta == {"dp": True}
    counts = reply.arrays["pos"] + reply.arrays["neg"]
    assert not np.all(counts == np.rint(counts))  # noised: the lone record's level is not readable exactly
    ledger = policy.ledger("bank")
    assert any("groups" in e.note for e in ledger.events)
    replay = _ask(app, EVALUATE_GROUPS, groups=SOLO, bins=GROUP_BINS, group_dp={"noise_multiplier": 2.0})
    # a repeat (a resumed run) gets the SAME release back: no fresh noise to average away, no second charge
    assert all(np.array_equal(replay.arrays[k], reply.arrays[k]) for k in ("pos", "neg"))
    assert sum("groups" in e.note for e in ledger.events) == 1
    other = _ask(app, EVALUATE_GROUPS, groups=OLDEST, bins=GROUP_BINS, group_dp={"noise_multiplier": 2.0})
    assert other.is_error and "one group evaluation per run" in other.meta["error"]


def test_a_deployed_bank_gates_group_requests_by_its_job_and_allow_list() -> None:
    """The agent's gate (`sampan.deploy.allow_requests.check_request`): no group request outside a job that announced
    groups, none in clear where the bank requires SecAgg, none un-noised in a DP job, none under its noise floor."""
    from sampan.deploy.allow import JobRefused
    from sampan.deploy.allow_requests import check_request
    from sampan.deploy.allow_section import AllowSection

    meta = {"groups": SOLO, "bins": GROUP_BINS}
    with pytest.raises(JobRefused, match="did not announce fairness by group"):
        check_request(None, "bank", EVALUATE_GROUPS, meta, {"workflow": "horizontal"})
    with pytest.raises(JobRefused, match="did not announce which groups"):
        check_request(None, "bank", EVALUATE_GROUPS, meta, {"workflow": "horizontal", "groups": True})
    job = {"workflow": "horizontal", "groups": [{"column": "sector"}]}
    check_request(None, "bank", EVALUATE_GROUPS, meta, job)
    with pytest.raises(JobRefused, match="requires secure"):
        check_request(AllowSection(require=["secure_aggregation"]), "bank", EVALUATE_GROUPS, meta, job)
    dp_job = {**job, "protections": ["dp", "dp2"]}
    with pytest.raises(JobRefused, match="group_dp"):
        check_request(None, "bank", EVALUATE_GROUPS, meta, dp_job)
    with pytest.raises(JobRefused, match="noise multiplier"):
        check_request(AllowSection(min_noise_multiplier=2.0), "bank", EVALUATE_GROUPS,
                      {**meta, "group_dp": {"noise_multiplier": 1.0}}, dp_job)
