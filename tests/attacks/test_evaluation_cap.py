"""The lifetime cap on evaluations of a party's holdout (issue 11, finding 20; adversarial review R11-5).

Holdout rows are outside the DP unit: each evaluation is an exact release about them (each row's label and
any coordinator-chosen function of the row, to the bin resolution). A party answers evaluations in at most
`max_evaluations` runs over its life, counted in its state dir. The review found the count covered DP runs
only: a coordinator that stopped asking for DP got 50 more evaluations of the same holdout after the cap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_secagg_attempts import MODEL, _splits

from sampan.horizontal.party import HorizontalParty
from sampan.privacy.party_policy import PartyPrivacyPolicy, PolicyRefused
from sampan.wire import Message


def _evaluate(state: Path, run: str, policy: PartyPrivacyPolicy, k: int) -> Message:
    split = _splits(3)["bank_2"]
    party = HorizontalParty("bank_2", split.train, split.test, policy, state_dir=state, max_evaluations=2)
    probe = np.r_[np.eye(3)[k % 3] * 50, 0.0]  # a model that is one feature: each score reads that feature
    return party.evaluate(Message(run, 1, "coordinator", "bank_2", "evaluate", arrays={"params": probe},
                                  meta={"model": MODEL}))


def test_evaluations_without_dp_count_against_the_cap(tmp_path: Path) -> None:
    """Two DP runs use the cap; further runs without DP (finer bins, exact sums) are refused too, also by a
    restarted party (a new instance on the same state dir)."""
    dp = PartyPrivacyPolicy(required_levels=frozenset({"DP"}))
    for i in range(2):
        assert _evaluate(tmp_path, f"dp-{i}", dp, i).kind == "evaluation"
    answered = 0
    for i in range(5):
        try:
            _evaluate(tmp_path, f"plain-{i}", PartyPrivacyPolicy(), i)
            answered += 1
        except PolicyRefused as exc:
            assert "max_evaluations" in str(exc)
    assert answered == 0, f"{answered} evaluations of the same holdout without DP were answered after the cap"


def test_runs_without_dp_use_the_cap_as_well(tmp_path: Path) -> None:
    """Control of the count itself: two runs without DP use the cap; the third run is refused (retries and later
    rounds of an already counted run are still answered)."""
    plain = PartyPrivacyPolicy()
    for i in range(2):
        _evaluate(tmp_path, f"plain-{i}", plain, i)
    assert _evaluate(tmp_path, "plain-1", plain, 2).kind == "evaluation"  # another round of a counted run
    with pytest.raises(PolicyRefused, match="max_evaluations"):
        _evaluate(tmp_path, "plain-2", plain, 0)
