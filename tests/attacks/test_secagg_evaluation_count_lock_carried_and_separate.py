"""Pins the fix of review R12-SAC-1 (issue 12; was
tests/attacks/review/test_secagg_carried_evaluation_scaler_digest.py): the carried evaluation and a separate `evaluate`
of
the same model share NO lock but the exact model digest, which a near-identity scaler changes.

Claim (SECURITY.md, `sampan.horizontal.secure_rounds`, `sampan.privacy.fit_evaluation`): the evaluation a
secure fit carries is "locked exactly as a separate `evaluate` of that model would be: ... neither part is
unmasked for another survivor set, whether the coordinator asks for the evaluation (or the fit) of the same
model alone". What binds them is only the `model:` lock on `request_digest("evaluate", ...)`:

- the carried part's content lock is ``b"evaluation|" + content`` while a separate `evaluate` has no content lock
  at all (`secagg_vector` returns None for it), so the content locks never meet;
- the `encoded/...` lock is over the whole [fit | evaluation] vector, never equal to an evaluation-only one;
- `request_digest` canonicalises only an EXACT identity scaler (mean all 0.0, scale all 1.0). A scaler with
  mean = 1e-300 leaves every feature bit-for-bit unchanged ((x - 1e-300) / 1 == x for every |x| > 1e-284), so it
  is the same model computing the same thing, under another digest.

Attack (malicious coordinator, public party apps): the round's combined [fit | evaluation] over all five,
then a separate secure `evaluate` of the same model with the near-identity scaler over the four others (and the
reverse order). Both complete; the difference of the evaluation parts is the victim's holdout histogram, loss
and Brier sums and row count, exactly.

Fix (in place): every evaluation, carried or separate, has ONE content lock, its exact integer counts and n
(`sampan.privacy.fit_evaluation.evaluation_lock`), and `request_digest` folds the scaler into the model. Was: lock the
carried evaluation's content with the same bytes (and key) as a separate evaluation's
and give separate evaluations a content lock (the pre-bin per-row score vector, or the histogram counts before
any scaling), so any request whose evaluation is bit-identical is bound to the first survivor set whatever the
digest says; and/or canonicalise the scaler by its effect (refuse |mean| below the features' ulp, or
digest the standardised holdout's hash) rather than by exact identity.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[0]))

from test_secagg_carried_evaluation import FIT, FRAC_BITS, CarryingCoordinator  # noqa: E402
from test_secagg_cross_round import VICTIM, _victim_alone  # noqa: E402

from sampan.privacy.fit_evaluation import evaluation_scale  # noqa: E402
from sampan.privacy.secagg import SecAggAbort  # noqa: E402

# (x - 1e-300) / 1.0 == x for every holdout value here: the same model, the same scores, another digest
NEAR_IDENTITY = {"mean": np.full(3, 1e-300), "scale": np.ones(3)}


def _others(c: CarryingCoordinator) -> list[str]:
    return [p for p in c.names if p != VICTIM]


@pytest.mark.parametrize("order", ["carried_first", "separate_first"])
def test_carried_and_separate_evaluation_of_one_model_are_not_unmasked_for_two_survivor_sets(order: str) -> None:
    c = CarryingCoordinator()
    everyone, others = c.names, _others(c)
    try:
        if order == "carried_first":
            combined = c.attempt(everyone, "round-2/attempt-0/n", round_id="round-2", kind="fit+evaluate")
            with_victim = combined[FIT:] / evaluation_scale(FRAC_BITS)
            without = c.attempt(
                others, "evaluate-1/attempt-0/n", round_id="evaluate-1", kind="evaluate", extra=NEAR_IDENTITY
            )
        else:
            with_victim = c.attempt(everyone, "evaluate-1/attempt-0/n", round_id="evaluate-1", kind="evaluate")
            combined = c.attempt(
                others, "round-2/attempt-0/n", round_id="round-2", kind="fit+evaluate", extra=NEAR_IDENTITY
            )
            without = combined[FIT:] / evaluation_scale(FRAC_BITS)
    except SecAggAbort:  # the defence: every other party refuses the second unmasking of the model's evaluation
        assert set(c.errors) == set(others), c.errors
        return
    assert not c.errors, c.errors  # every party answered both: two unmaskings of one model's evaluation
    leaked = with_victim - without
    truth = _victim_alone("evaluate")
    n_bins = (truth.size - 3) // 3
    # the victim's exact per-bin positive/negative counts and row count, its loss and Brier sums
    np.testing.assert_array_equal(np.rint(leaked[: 2 * n_bins]), truth[: 2 * n_bins])
    assert round(leaked[-1]) == truth[-1] == 20
    np.testing.assert_allclose(leaked[-3:-1], truth[-3:-1], atol=1e-2)
    pytest.fail("the victim's holdout evaluation was isolated (counts exact, loss and Brier sums)")
