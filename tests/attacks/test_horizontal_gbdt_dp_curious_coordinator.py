"""A curious coordinator against a bank in a horizontal GBDT job under DP (`sampan.privacy.gbdt_dp`).

Claim: under `[privacy.gbdt]` every tree statistic that leaves the bank is the output of a Gaussian mechanism
charged to the bank's own ledger before it leaves; the bank answers at most the job's shape (n_trees trees,
max_depth + 1 releases each), never a node twice in a tree, never without noise, never below its minimum noise.
The coordinator tries: exact requests (describe, sketch, hist), extra histograms (repeated nodes, nodes twice in
one request, more levels and more trees than the shape), a node holding ONE record, and noise below the floor.
Each is refused, or answered with noise at the full per-record sensitivity and charged.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import sampan.privacy.mechanisms
from sampan.core.capability import PartySetup
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL
from sampan.privacy.gbdt_dp import hist_sensitivity
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.privacy.randomness import seeded_generator
from sampan.wire import Message

FEATURES = ["f0", "f1", "f2"]
SHAPE = {"n_trees": 2, "max_depth": 2, "dp": True}
DP = {"noise_multiplier": 1.0, "clip": [1.0, 0.25]}


def _bank(policy: PartyPrivacyPolicy) -> object:
    rng = np.random.default_rng(4)
    n = 60
    X = rng.normal(size=(n, 3))
    X[0] = [9.0, 9.0, 9.0]  # the target: the only row above 5 in f0
    y = (rng.random(n) < 0.4).astype(np.int8)
    data = PartyData(party="bank", ids=np.array([f"r{i}" for i in range(n)], dtype=object), X=X, y=y,
                     feature_names=FEATURES)
    test = data.subset(np.arange(10))
    job = {"workflow": "horizontal", "model": "gbdt", "gbdt": SHAPE}
    return HORIZONTAL.party_app(PartySetup("bank", (data, test), job, policy=policy))


def _ask(app, step: int, kind: str, arrays: dict | None = None, meta: dict | None = None) -> Message:
    return app.handle(Message("run", step, "coordinator", "bank", kind, arrays or {}, meta or {}))


def _setup(app) -> None:
    edges = np.array([5.0, 0.0, 0.0])  # f0 <= 5 | f0 > 5: bin 1 of f0 holds the target row alone
    _ask(app, 1, "hgb.setup", {"edges": edges, "counts": np.array([1, 1, 1])}, {"base_score": 0.0})


def _hist(app, step: int, nodes: list[int], new_tree: bool = False, **dp: object) -> Message:
    meta = {"dp": {**DP, **dp}, **({"new_tree": True} if new_tree else {})}
    return _ask(app, step, "hgb.hist", {"nodes": np.array(nodes)}, meta)


def _charges(policy: PartyPrivacyPolicy) -> int:
    return sum(e.count for e in policy.ledger("bank").events)


def test_exact_requests_are_refused_in_a_dp_job() -> None:
    policy = PartyPrivacyPolicy()
    app = _bank(policy)
    stump = {"kind": "gbdt", "n_features": 3, "base_score": 0.0, "splits": [],
             "trees": [{"left": [-1], "right": [-1], "owner": [""], "value": [0.0], "default_left": [True]}]}
    early = _ask(app, 0, "evaluate", {"edges": np.zeros(3), "edge_counts": np.ones(3, dtype=np.int64)},
                 {"model": stump, "bins": 2000})  # before any tree release: already under the DP rules
    assert early.is_error and "exactly 100 under DP" in str(early.meta), early.meta
    for kind, meta in (("describe", {}), ("hgb.sketch", {"n_bins": 8}), ("hgb.hist", {"new_tree": True})):
        reply = _ask(app, 0, kind, {"nodes": np.array([0])} if kind == "hgb.hist" else {}, meta)
        assert reply.is_error and "without" in str(reply.meta), (kind, reply.meta)
    assert _charges(policy) == 0


def test_extra_histograms_are_refused_and_nothing_is_charged_for_them() -> None:
    policy = PartyPrivacyPolicy()
    app = _bank(policy)
    _setup(app)
    assert not _hist(app, 2, [0], new_tree=True).is_error
    assert _charges(policy) == 1
    assert _hist(app, 3, [0]).is_error  # the root again: fresh noise on the same sums
    assert _hist(app, 3, [5, 5]).is_error  # one node twice in a request
    # split the root (f0 <= bin 0 -> node 1, else node 2), then both children: one release (disjoint rows)
    _ask(app, 4, "hgb.split", {"splits": np.array([[0, 0, 0, 1, 2]], dtype=np.int64)})
    assert not _hist(app, 5, [1, 2]).is_error
    assert _hist(app, 6, [1]).is_error  # a released node again
    _ask(app, 7, "hgb.split", {"splits": np.array([[1, 1, 0, 3, 4]], dtype=np.int64)})
    assert not _hist(app, 8, [3, 4], totals=True).is_error  # release 3 of max_depth + 1 = 3
    _ask(app, 9, "hgb.split", {"splits": np.array([[3, 2, 0, 5, 6]], dtype=np.int64)})
    too_deep = _hist(app, 10, [5, 6])
    assert too_deep.is_error and "allows 3 per tree" in str(too_deep.meta)
    assert _charges(policy) == 3
    assert not _hist(app, 11, [0], new_tree=True).is_error  # tree 2 of 2
    too_many = _hist(app, 12, [0], new_tree=True)
    assert too_many.is_error and "grows 2 trees" in str(too_many.meta)
    assert _charges(policy) == 4
    below = _hist(app, 13, [1], noise_multiplier=0.1)
    assert below.is_error and "below its minimum" in str(below.meta)
    for features in ([0, 0], [3], [], "0"):  # a tree's feature subset: distinct indices of its own features
        bad = _hist(app, 14, [1], features=features)
        assert bad.is_error and "dp.features" in str(bad.meta), features
    assert _charges(policy) == 4


def test_a_node_with_one_record_is_noised_at_full_sensitivity_and_charged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Node 2 holds the target row alone (f0 > 5): its histogram is answered like any other, with noise of std
    z*sqrt(2d)*c_g on every G bin; over many independent runs the released G in the target's bin spreads as that
    Gaussian around the row's gradient, so one release does not pin it (the noise dwarfs |g| <= 1).

    The mechanism's generator is a distinct seeded stream per release (the test hook, as in the neighbouring
    tests): with OS noise the 40-sample std left the +-45% band about 1 run in 20,000 (chi-square, 39 d.o.f.)."""
    seeds = itertools.count(100)
    monkeypatch.setattr(sampan.privacy.mechanisms, "secure_generator", lambda: seeded_generator(next(seeds)))
    released = []
    for _ in range(40):
        policy = PartyPrivacyPolicy()
        app = _bank(policy)
        _setup(app)
        _hist(app, 2, [0], new_tree=True)
        _ask(app, 3, "hgb.split", {"splits": np.array([[0, 0, 0, 1, 2]], dtype=np.int64)})
        reply = _hist(app, 4, [1, 2])
        assert not reply.is_error and _charges(policy) == 2
        released.append(float(reply.arrays["G:2"][1]))  # bin 1 of f0 in node 2: the target's own gradient
    std = float(np.std(released))
    expected = 1.0 * hist_sensitivity(len(FEATURES)) * 1.0
    assert std == pytest.approx(expected, rel=0.45) and expected > 2  # noise std over twice the max |g|


def test_a_deployed_dp_gbdt_job_announces_its_noise_and_shape_and_the_gate_refuses_exact_tree_requests() -> None:
    """The same rules at the deploy gate (`check_job`, `check_request`), before the bank's own mod sees anything."""
    from sampan.config import parse_config
    from sampan.deploy.allow import AllowSection, JobRefused, check_job, check_request, job_description

    config = parse_config({"run": {"name": "d", "rounds": 1}, "source": {"kind": "consortium", "n_smes": 600},
                           "model": {"kind": "gbdt", "n_trees": 4, "max_depth": 2},
                           "privacy": {"epsilon": 5.0, "gbdt": {"noise_multiplier": 2.0, "bounds": {"*": [0, 1]}}}})
    job = job_description(config.to_dict(), workflow="horizontal", operator=None, parties=["a", "b", "c"],
                          label_holder=None)
    assert "gbdt_dp" in job["protections"] and job["gbdt"] == {"n_trees": 4, "max_depth": 2, "n_bins": 32, "dp": True}
    allow = AllowSection(require=["dp"], min_noise_multiplier=1.0)
    check_job(allow, "a", job, "loans", FEATURES)  # a party requiring DP accepts trees under DP
    with pytest.raises(JobRefused, match="carries no dp"):
        check_request(allow, "a", "hgb.hist", {"new_tree": True}, job)
    with pytest.raises(JobRefused, match="min_noise_multiplier"):
        check_request(allow, "a", "hgb.hist", {"dp": {**DP, "noise_multiplier": 0.6}}, job)
    check_request(allow, "a", "hgb.hist", {"dp": {**DP, "noise_multiplier": 2.0}}, job)
    exact = job_description({**config.to_dict(), "privacy": None}, workflow="horizontal", operator=None,
                            parties=["a", "b", "c"], label_holder=None)
    with pytest.raises(JobRefused, match="lacks required protection"):
        check_job(allow, "a", exact, "loans", FEATURES)
