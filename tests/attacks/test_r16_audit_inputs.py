"""R16-AUDIT-8..11: attack-library inputs that gave non-finite attacks, silent non-answers or tracebacks.

- 8: `alie_z(n, f)` with f >= floor(n/2 + 1) (s <= 0 supporters needed, outside Baruch et al.'s setting) returns
  z = inf (s = 0) or nan (s < 0), and `alie` then hands the malicious client a -inf/nan update.
- 9: non-finite or ill-typed parameters are accepted or escape as builtin errors: reconstruction tolerance = inf
  makes an all-zero reconstruction "recover" every record (success True); lr = nan runs a fit; scale / max_norm /
  eta = nan give nan updates; claimed_epsilon = nan silently gives "not refuted" / "not exceeded"; a float k_pos
  raises TypeError; membership_at_fpr's delta check raises a plain ValueError (not a SampanError, so the CLI
  shows a traceback); clopper_pearson accepts a fractional count; consistent_with_sum accepts
  expected="sum_without[0]" although its message says sum, mean or weighted_mean only.
- 10: `audit_over_k` never says that the audit cannot refute the claim (the power note of audit_from_scores is
  lost because the inner calls get no claimed_epsilon), even when eps_max_provable is below the claim.
- 11: `consistent_with_sum` calls an aggregate that silently dropped a party "consistent" when that party's
  input is small: `distinguishable` only compares the expected aggregate with single inputs, not with the
  sums without one input (which it lists among the matches).
Fixed: DataError (naming the parameter) for a malicious majority in ALIE, for non-finite / ill-typed parameters and
for membership_at_fpr's delta; audit_over_k carries the power note; consistent_with_sum is not consistent when the
expected aggregate cannot be told from a sum without one input."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from sampan.audit import (
    DeltaObservation,
    alie,
    alie_z,
    audit_from_scores,
    audit_over_k,
    consistent_with_sum,
    membership_at_fpr,
    model_replacement_backdoor,
    norm_clip,
    probe_fedavg_delta,
    reconstruction_quality,
    sign_flip,
)
from sampan.audit.intervals import clopper_pearson
from sampan.errors import DataError, SampanError

NAN = float("nan")


@pytest.mark.parametrize("f", [6, 7])
def test_alie_refuses_a_malicious_majority(f: int) -> None:
    """R16-AUDIT-8: s = ⌊n/2 + 1⌋ − f ≤ 0 is refused; the last f with s = 1 stays finite."""
    benign = np.random.default_rng(1608).standard_normal((5, 4))
    with pytest.raises(DataError, match="majority"):
        alie_z(10, f)
    with pytest.raises(DataError, match="majority"):
        alie(benign, 10, f)
    z = alie_z(10, 5)
    assert math.isfinite(z) and np.all(np.isfinite(alie(benign, 10, 5)))


_rng = np.random.default_rng(1609)
_S, _INC = _rng.standard_normal(40), _rng.random(40) < 0.5
_X = _rng.standard_normal((3, 6))
_OBS = [DeltaObservation(np.zeros(4), 0.0, np.full(4, 1e-3), 1e-3)]

CASES: dict[str, Callable[[], Any]] = {
    "reconstruction_tolerance_inf": lambda: reconstruction_quality(np.zeros((1, 6)), _X, tolerance=math.inf),
    "probe_lr_nan": lambda: probe_fedavg_delta(_OBS, np.ones((1, 4)), [1.0], lr=NAN, local_steps=1, restarts=0),
    "sign_flip_scale_nan": lambda: sign_flip([1.0, 2.0], scale=NAN),
    "norm_clip_nan": lambda: norm_clip([[3.0, 4.0]], NAN),
    "model_replacement_eta_nan": lambda: model_replacement_backdoor([0.0, 0.0], [1.0, 1.0], 3, eta=NAN),
    "one_run_claim_nan": lambda: audit_from_scores(_S, _INC, 5, 5, claimed_epsilon=NAN),
    "one_run_k_float": lambda: audit_from_scores(_S, _INC, 2.5, 2),  # type: ignore[arg-type]
    "fpr_claim_nan": lambda: membership_at_fpr(_S + 3.0, _S, claimed_epsilon=NAN),
    "clopper_pearson_fractional": lambda: clopper_pearson(2.5, 10),  # type: ignore[arg-type]
    "sum_expected_undocumented": lambda: consistent_with_sum(_X[1] + _X[2], _X, expected="sum_without[0]"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_parameters_get_a_data_error(case: str) -> None:
    """R16-AUDIT-9."""
    with pytest.raises(DataError):
        CASES[case]()


def test_membership_at_fpr_delta_is_a_sampan_error() -> None:
    """R16-AUDIT-9."""
    with pytest.raises(SampanError):
        membership_at_fpr(_S, _S, delta=2.0)


def test_audit_over_k_warns_when_it_cannot_refute() -> None:
    """R16-AUDIT-10: the power is the best of the tries, and the note says the claim cannot be refuted."""
    res = audit_over_k(_S, _INC, [(2, 2), (5, 5)], claimed_epsilon=50.0)
    assert res.eps_max_provable < 50.0
    assert any("cannot" in n and "refute" in n for n in res.notes), res.notes
    single = [audit_from_scores(_S, _INC, kp, kn, 0.0, 1 - 0.05 / 2).eps_max_provable for kp, kn in [(2, 2), (5, 5)]]
    assert res.eps_max_provable == pytest.approx(max(single))
    assert any("per-try level" in n for n in res.notes)


def test_dropped_small_party_is_not_consistent() -> None:
    """R16-AUDIT-11."""
    X = np.random.default_rng(1611).standard_normal((3, 50))
    X[2] *= 1e-8  # e.g. the verifier's party with a near-converged (tiny) update
    res = consistent_with_sum(X[0] + X[1], X)  # party 2 never made it into the aggregate
    assert "sum_without[2]" in res.matches
    assert not res.consistent and not res.distinguishable, res.to_dict()
    assert any("sum_without[2]" in n for n in res.notes)
    honest = consistent_with_sum(X.sum(axis=0), X)  # the honest sum is not called consistent either: it cannot
    assert not honest.consistent and not honest.distinguishable  # be told from the drop on these inputs
