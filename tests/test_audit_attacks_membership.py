"""TPR at 0.1% FPR and the ε lower bound: an overfit model is caught, an independent one is not (issue 16)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit

from sampan.audit import FixedFprResult, membership_at_fpr, true_label_confidence
from sampan.errors import DataError


def _overfit_scores(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Member, non-member and calibration confidences of an LR that memorised 50 random-label rows."""
    d, n, n_out = 1000, 50, 3000
    X = rng.standard_normal((n, d)) / np.sqrt(d)
    y = rng.integers(0, 2, n).astype(float)
    w, b = np.zeros(d), 0.0
    for _ in range(300):
        r = expit(X @ w + b) - y
        w -= 2.0 * X.T @ r / n
        b -= 2.0 * float(r.mean())
    Xo = rng.standard_normal((n_out, d)) / np.sqrt(d)
    yo = rng.integers(0, 2, n_out).astype(float)
    members = true_label_confidence(expit(X @ w + b), y)
    outside = true_label_confidence(expit(Xo @ w + b), yo)
    return members, outside[:1500], outside[1500:]


def test_overfit_model_members_found_at_low_fpr_with_calibrated_threshold() -> None:
    members, nonmembers, calib = _overfit_scores(np.random.default_rng(1))  # seeded: a reproducible test
    res = membership_at_fpr(members, nonmembers, calibration_nonmember_scores=calib, claimed_epsilon=1.0)
    assert res.threshold_source == "calibration"
    assert res.tpr > 0.3 and res.fpr <= 0.004
    assert res.tpr_ci[0] > res.fpr_ci[1]  # a real advantage, not noise
    assert res.eps_lower > 1.0 and res.claim_exceeded is True
    assert res.epsilon[1] <= res.epsilon[0] <= res.epsilon[2]
    json.dumps(res.to_dict())  # report-ready


def test_scores_independent_of_membership_give_no_epsilon() -> None:
    rng = np.random.default_rng(2)
    for _ in range(5):
        res = membership_at_fpr(rng.random(500), rng.random(2000), calibration_nonmember_scores=rng.random(2000),
                                claimed_epsilon=1.0)
        assert res.eps_lower == 0.0
        assert res.claim_exceeded is False
        assert res.tpr_ci[0] <= 0.01


def test_post_selected_threshold_respects_target_fpr_and_says_so() -> None:
    rng = np.random.default_rng(3)
    members, nonmembers = rng.normal(2.0, 1.0, 1000), rng.normal(0.0, 1.0, 5000)
    res = membership_at_fpr(members, nonmembers, fpr=0.001)
    assert isinstance(res, FixedFprResult)
    assert res.fp <= 5 and res.threshold_source.startswith("audited")
    assert any("nominal" in n for n in res.notes)
    # The exact rule: nothing at or above the threshold beyond the allowed false positives.
    assert (nonmembers >= res.threshold).sum() == res.fp
    assert res.tp == (members >= res.threshold).sum()


def test_unresolvable_fpr_is_noted() -> None:
    res = membership_at_fpr([0.9, 0.8, 0.7], [0.1, 0.2, 0.3], fpr=0.001)
    assert res.fp == 0 and res.tpr == 1.0
    assert any("cannot be resolved" in n for n in res.notes)
    small = membership_at_fpr([0.9, 0.8, 0.7], [0.1, 0.2, 0.3], claimed_epsilon=2.0)
    assert small.eps_lower == pytest.approx(small.eps_max_provable) and small.eps_max_provable < 2.0
    assert any("cannot refute" in n for n in small.notes)


@pytest.mark.parametrize("kwargs", [{"fpr": 0.0}, {"fpr": 1.5}, {"confidence": 1.0}])
def test_bad_parameters_are_clear_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(DataError):
        membership_at_fpr([0.5], [0.5], **kwargs)


def test_nan_scores_rejected_by_name() -> None:
    with pytest.raises(DataError, match="member scores"):
        membership_at_fpr([np.nan], [0.5])
