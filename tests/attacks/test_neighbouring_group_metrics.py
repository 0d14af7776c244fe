"""Neighbouring-dataset differential test for the per-group release under DP (issue 13 item 8).

Two relations, all noise fixed:
- the horizontal harness (`test_neighbouring_horizontal`): D+1 adds one training row at bank_0; every field that
  differs must come from a charged mechanism, the `group_evaluation` counts by their own `DP1:groups` charge
  (one per party, at the noise the request carried, in the run ledger);
- the group release's own unit, a holdout row: a party with one more holdout record answers the same request;
  only the noised counts differ, and each answer is charged to the party's ledger before it leaves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_neighbouring_horizontal as harness

import sampan.privacy.mechanisms
from sampan.core.party import PartyApp
from sampan.data import PartyData
from sampan.horizontal.group_evaluation import EVALUATE_GROUPS, GROUP_BINS, mount_groups
from sampan.horizontal.party import HorizontalParty
from sampan.privacy import Ledger
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.privacy.randomness import seeded_generator
from sampan.runtime.federation import simulated_party_apps
from sampan.runtime.store import Store
from sampan.wire import Message

NAME = "dp2-groups"
GROUPS = {"groups": ["x3"], "group_bands": {"x3": [-0.5, 0.5]}, "min_group_count": 10}
CONFIG = {"privacy": {"epsilon": 50.0, "dp1": harness.DP1, "dp2": {"noise_multiplier": 1.0},
                      "group_noise_multiplier": 3.0}, "evaluation": GROUPS}


def _requested_z(tag: str, meta: dict[str, Any]) -> float | None:
    """The group release's z from its request (`group_dp`); the harness's own lookup for every other tag."""
    if tag != "DP1:groups":
        return ORIGINAL_Z(tag, meta)
    z = (meta.get("group_dp") or {}).get("noise_multiplier")
    return None if z is None else float(z)


ORIGINAL_Z = harness._requested_z


def _apps(splits: Any) -> dict[str, PartyApp]:
    return simulated_party_apps("horizontal", {n: (s.train, s.test) for n, s in splits.items()},
                                job={"workflow": "horizontal", "groups": True})


@pytest.fixture
def grouping_harness(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(harness.CONFIGS, NAME, CONFIG)
    monkeypatch.setitem(harness.TRUSTED, NAME, set())
    monkeypatch.setitem(harness.TAGS, "DP1:groups", ("DP1", "group evaluation histograms"))
    monkeypatch.setitem(harness._RELEASED_BY, "group_evaluation", ("DP1:groups",))
    monkeypatch.setitem(harness._REQUEST, "group_evaluation", EVALUATE_GROUPS)
    monkeypatch.setattr(harness, "_requested_z", _requested_z)
    monkeypatch.setattr(harness, "build_party_apps", _apps)


def _run_ledger(tmp_path: Path, neighbour: bool) -> Ledger:
    """The run's durable ledger (the group charge comes after the last checkpoint)."""
    store = Store.open(f"sqlite:///{tmp_path / f'{NAME}-{neighbour}.db'}")
    ledger_json = store.ledger(store.list_runs()[0].run_id)
    assert ledger_json is not None
    return Ledger.from_json(ledger_json)


@pytest.mark.usefixtures("grouping_harness")
def test_a_training_row_changes_the_group_release_only_through_its_charge(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    d, _ = harness._transcript(tmp_path, monkeypatch, NAME, neighbour=False)
    d1, _ = harness._transcript(tmp_path, monkeypatch, NAME, neighbour=True)
    ledger1 = _run_ledger(tmp_path, True)
    changed = harness.differential_check(NAME, d, d1, ledger1)
    assert {"party:group_evaluation arrays.pos", "party:group_evaluation arrays.neg"} <= changed["charged"]
    assert "visible" not in changed and "aggregate" not in changed
    charges = [e for e in ledger1.events if "group evaluation" in e.note]
    assert sorted(e.party for e in charges) == sorted(harness.PARTIES)
    assert all(e.noise_multiplier == 3.0 for e in charges)


@pytest.mark.usefixtures("grouping_harness")
def test_an_uncharged_group_release_fails_the_check() -> None:
    """The checker itself: group counts that differ while the ledger holds no DP1:groups charge are caught."""
    key = ("party:group_evaluation", "bank_0", 0)
    release = [("bank_0", 3, {"group_dp": {"noise_multiplier": 3.0}})]
    d, d1 = ([(key, key[0], "bank_0", {"arrays.pos": counts}, release)] for counts in (np.zeros(2), np.ones(2)))
    with pytest.raises(AssertionError, match="arrays.pos.*no charge"):
        harness.differential_check(NAME, d, d1, None)


def _holdout(extra: bool) -> PartyData:
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(60, 4)), (rng.random(60) < 0.4).astype(np.int8)
    if extra:  # D + one holdout record, at the edge of a band
        X, y = np.vstack([X, [[3.0, -3.0, 0.49, 3.0]]]), np.append(y, np.int8(1))
    return PartyData("bank", np.array([f"r{i}" for i in range(len(X))], dtype=object), X, y, harness.FEATURES)


def _answer(extra: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[Message, PartyPrivacyPolicy]:
    monkeypatch.setattr(sampan.privacy.mechanisms, "secure_generator", lambda: seeded_generator(9))
    policy = PartyPrivacyPolicy(required_levels=frozenset({"DP"}))
    train = _holdout(False)
    party = HorizontalParty("bank", train, _holdout(extra), policy)
    app = PartyApp("bank", mods=list(party.mods))
    for kind, handler in party.core_handlers().items():
        app.register(kind, handler)
    mount_groups(app, party)
    arrays = {"params": np.array([1.0, -0.5, 0.3, 0.0, 0.1])}
    meta = {"model": {"kind": "logistic", "n_features": 4}}
    assert app.handle(Message("run", 3, "coordinator", "bank", "evaluate", arrays, meta)).kind == "evaluation"
    spec = [{"column": "x3", "feature": "x3", "cuts": [-0.5, 0.5]}]
    reply = app.handle(Message("run", 3, "coordinator", "bank", EVALUATE_GROUPS, arrays,
                               {**meta, "groups": spec, "bins": GROUP_BINS, "group_dp": {"noise_multiplier": 3.0}}))
    return reply, policy


def test_a_holdout_row_changes_only_the_charged_noised_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    a, policy_a = _answer(False, monkeypatch)
    b, policy_b = _answer(True, monkeypatch)
    assert a.kind == b.kind == "group_evaluation" and a.meta == b.meta == {"dp": True}
    assert set(a.arrays) == set(b.arrays) == {"pos", "neg"}
    diff = np.abs(a.arrays["pos"] - b.arrays["pos"]) + np.abs(a.arrays["neg"] - b.arrays["neg"])
    assert np.count_nonzero(diff) == 1 and diff.max() == pytest.approx(1.0)  # one cell, by one: sensitivity 1
    for policy in (policy_a, policy_b):
        charges = [e for e in policy.ledger("bank").events if "groups" in e.note]
        assert len(charges) == 1 and charges[0].noise_multiplier == pytest.approx(3.0)
