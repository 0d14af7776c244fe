"""A curious coordinator against the per-group release (`evaluate_groups`), from the issue 13 review (item 8).

Each attack below now fails: one spec per group column, a category's levels exactly its one-hot columns (and a
row in at most one level of a spec by construction), secondary suppression per column, the per-run answer and
the DP runs persisted in the party's state dir, the model checked with or without DP.

Claims under attack (`sampan.horizontal.group_evaluation`, `sampan.privacy.group_release_mod`):
- without DP a party zeroes every level it holds fewer than 10 holdout rows of, "so a one-record group reveals
  nothing but that it is small", and it answers one group request per run ("another grouping of the same rows
  would let the coordinator difference");
- under DP the counts go through one Gaussian mechanism of L2 sensitivity sqrt(number of group columns), "a row
  falls in one level per column".

R13-GRP-1: `check_specs` lets ONE request carry two specs over the same numeric feature (or a band next to a
  catch-all band): band "< 98.5" (n-1 rows, shown) and band ">= -1e9" (all n rows, shown) differ by exactly the
  lone record whose own band was withheld; its label and score bin leave. The "once per run" rule is void inside
  a request (group_evaluation.py `check_specs`, group_release_mod.py `_suppressed`). Forbidding a repeated
  feature is not enough: ONE banding ("< 98.5" shown, ">= 98.5" withheld) differenced with the run's own exact
  evaluation histogram (same 100 bins, same model: the rule "only on the evaluated model") does the same. Cell
  suppression cannot hold while the complement and the total are released exactly.
R13-GRP-2: a "category" spec's levels may be ANY feature names (`check_specs` checks only `level in names`), e.g.
  the one-hot columns of two categories in one spec: every row falls in two levels of that one "column", so one
  added holdout row moves two counts while the mod charges sensitivity sqrt(1) (group_release_mod.py
  `_charged_mechanism`: sensitivity = sqrt(len(groups))). With 64 levels drawn from 0/1 columns the true
  sensitivity reaches sqrt(64) = 8x the charged one.
R13-GRP-3: the "one group evaluation per run" memory (`answered`) and the run's DP flag (`dp_runs`) live only in
  memory, while `evaluated.json` (which admits the group request) survives a restart: after an agent restart the
  coordinator gets a second grouping of the same run (differencing again) (group_release_mod.py `answered`).
R13-GRP-4: likewise, in a DP run whose party policy does not itself require DP, a restarted party answers a group
  request without ``group_dp`` with exact, un-noised, uncharged counts (`PartyDPState.dp_runs` is in memory; the
  deployed gate's "job announced DP => group_dp" check covers deployments, not the library's PartyApp).
R13-GRP-8 (low): `group_evaluation`'s docstring says "Once per run, and only on the model the party evaluated in
  this run"; the mod checks the model only under DP. Without DP a coordinator picks the model of the group
  request, so the record R13-GRP-1 isolates gives any one linear projection of its features (score bin), not only
  its score under the released model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sampan.privacy.mechanisms
from sampan.core.party import PartyApp
from sampan.data import PartyData
from sampan.horizontal.group_evaluation import EVALUATE_GROUPS, GROUP_BINS, mount_groups
from sampan.horizontal.party import HorizontalParty
from sampan.privacy.group_release_mod import MIN_CELL_ROWS
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.privacy.randomness import seeded_generator
from sampan.wire import Message

NAMES = ["sector=a", "sector=b", "district=x", "district=y", "age"]
MODEL = {"kind": "logistic", "n_features": 5}
PARAMS = np.array([0.5, -0.5, 0.3, -0.3, 0.05, 0.0])


def _data(n: int, seed: int, extra: bool = False) -> PartyData:
    rng = np.random.default_rng(seed)
    sector, district = rng.integers(0, 2, n), rng.integers(0, 2, n)
    age = rng.uniform(0, 20, n)
    age[1] = 99.0  # the only record this old
    X = np.column_stack([np.eye(2)[sector], np.eye(2)[district], age])
    y = (rng.random(n) < 0.3).astype(np.int8)
    if extra:  # D + one holdout record
        X, y = np.vstack([X, [[1.0, 0.0, 1.0, 0.0, 5.0]]]), np.append(y, np.int8(1))
    return PartyData("bank", np.array([f"r{i}" for i in range(len(X))], dtype=object), X, y, NAMES)


def _app(policy: PartyPrivacyPolicy | None = None, state_dir: Path | None = None, extra: bool = False) -> PartyApp:
    party = HorizontalParty("bank", _data(200, 1), _data(120, 2, extra), policy, state_dir=state_dir)
    app = PartyApp("bank", mods=list(party.mods))
    for kind, handler in party.core_handlers().items():
        app.register(kind, handler)
    mount_groups(app, party)
    return app


def _ask(app: PartyApp, kind: str, **meta: Any) -> Message:
    return app.handle(Message("run-1", 3, "coordinator", "bank", kind, arrays={"params": PARAMS},
                              meta={"model": MODEL, **meta}))


def _lone_record_cells(pos: np.ndarray, neg: np.ndarray, shown_all: int, shown_rest: int) -> int:
    """Non-zero cells of (all rows) minus (all rows but the lone one): the lone record's label and score bin."""
    return int(np.count_nonzero(pos[shown_all] - pos[shown_rest]) + np.count_nonzero(neg[shown_all] - neg[shown_rest]))


def test_one_request_cannot_difference_out_a_withheld_record() -> None:
    app = _app()
    assert _ask(app, "evaluate").kind == "evaluation"
    groups = [{"column": "age", "feature": "age", "cuts": [98.5]},  # "< 98.5": all but record 1; ">= 98.5": it
              {"column": "all", "feature": "age", "cuts": [-1e9]}]  # ">= -1e9": every row
    reply = _ask(app, EVALUATE_GROUPS, groups=groups, bins=GROUP_BINS)
    if reply.is_error:
        return  # refusing the request is a defence
    assert 1 in reply.meta["withheld"]  # the lone record's own band was withheld ...
    pos, neg = reply.arrays["pos"], reply.arrays["neg"]
    assert _lone_record_cells(pos, neg, 3, 0) == 0  # ... so nothing of it may be read off the others


def test_the_evaluation_histogram_cannot_difference_out_a_withheld_record() -> None:
    app = _app()
    evaluation = _ask(app, "evaluate", bins=GROUP_BINS)  # the run's evaluation, at the group release's binning
    assert evaluation.kind == "evaluation"
    reply = _ask(app, EVALUATE_GROUPS, groups=[{"column": "age", "feature": "age", "cuts": [98.5]}], bins=GROUP_BINS)
    if reply.is_error:
        return
    assert 1 in reply.meta["withheld"]  # ">= 98.5" (the lone record) withheld ...
    # ... and what the coordinator derives as "evaluated minus shown" is never fewer than MIN_CELL_ROWS rows:
    # here "< 98.5" (everyone else) is withheld too (secondary suppression), so the difference is the whole
    # holdout, not the lone record
    shown = reply.arrays["pos"].sum(axis=0) + reply.arrays["neg"].sum(axis=0)
    derivable = evaluation.arrays["pos"] + evaluation.arrays["neg"] - shown
    assert derivable.sum() == 0 or derivable.sum() >= MIN_CELL_ROWS
    assert reply.meta["withheld"] == [0, 1]


def _dp_answer(extra: bool, monkeypatch: pytest.MonkeyPatch) -> Message:
    monkeypatch.setattr(sampan.privacy.mechanisms, "secure_generator", lambda: seeded_generator(9))
    app = _app(PartyPrivacyPolicy(required_levels=frozenset({"DP"})), extra=extra)
    assert _ask(app, "evaluate").kind == "evaluation"
    mixed = [{"column": "segment", "levels": ["sector=a", "sector=b", "district=x", "district=y"]}]
    return _ask(app, EVALUATE_GROUPS, groups=mixed, bins=GROUP_BINS, group_dp={"noise_multiplier": 3.0})


def test_one_holdout_row_moves_the_noised_counts_by_at_most_the_charged_sensitivity(
        monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _dp_answer(False, monkeypatch), _dp_answer(True, monkeypatch)
    if a.is_error and b.is_error:
        return  # refusing such a spec is a defence
    assert a.meta == b.meta == {"dp": True}
    charged = np.sqrt(1.0)  # what the mod charged: sqrt(len(groups)), one spec
    moved = np.sqrt(np.sum((a.arrays["pos"] - b.arrays["pos"]) ** 2 + (a.arrays["neg"] - b.arrays["neg"]) ** 2))
    assert moved <= charged + 1e-9


AGE = [{"column": "age", "feature": "age", "cuts": [98.5]}]
CATCH_ALL = [{"column": "age", "feature": "age", "cuts": [-1e9]}]


def test_a_restarted_party_still_answers_one_grouping_per_run(tmp_path: Path) -> None:
    first = _app(state_dir=tmp_path)
    assert _ask(first, "evaluate").kind == "evaluation"
    assert _ask(first, EVALUATE_GROUPS, groups=AGE, bins=GROUP_BINS).kind == "group_evaluation"
    restarted = _app(state_dir=tmp_path)  # the agent restarts; its state dir stays
    again = _ask(restarted, EVALUATE_GROUPS, groups=CATCH_ALL, bins=GROUP_BINS)
    assert again.is_error  # a second grouping of the same holdout rows (differencing) must be refused


def test_a_restarted_party_never_releases_a_dp_runs_groups_in_clear(tmp_path: Path) -> None:
    policy = PartyPrivacyPolicy()  # the party does not itself require DP; the run is a DP run
    first = _app(policy, state_dir=tmp_path)
    assert _ask(first, "describe", dp_count={"noise_multiplier": 5.0}).kind != "error"  # the run is under DP
    assert _ask(first, "evaluate").kind == "evaluation"
    before = _ask(first, EVALUATE_GROUPS, groups=AGE, bins=GROUP_BINS)  # no group_dp: refused while it runs
    assert before.is_error and "must be noised" in before.meta["error"]
    restarted = _app(policy, state_dir=tmp_path)  # the agent restarts; its state dir (evaluated.json) stays
    reply = _ask(restarted, EVALUATE_GROUPS, groups=AGE, bins=GROUP_BINS)  # no group_dp
    assert reply.is_error or reply.meta.get("dp") is True


def test_groups_are_evaluated_only_on_the_model_the_party_evaluated() -> None:
    app = _app()
    assert _ask(app, "evaluate").kind == "evaluation"
    # a model that scores one feature: the isolated record's score bin (R13-GRP-1) is then its district column
    probe = np.array([0.0, 0.0, 8.0, -8.0, 0.0, 0.0])
    reply = app.handle(Message("run-1", 3, "coordinator", "bank", EVALUATE_GROUPS, arrays={"params": probe},
                               meta={"model": MODEL, "groups": AGE, "bins": GROUP_BINS}))
    assert reply.is_error
