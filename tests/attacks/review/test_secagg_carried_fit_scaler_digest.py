"""Review (issue 12, SecAgg carried evaluation) R12-SAC-3: the fit part of a round's combined vector is unmasked
again for another survivor set by a plain `fit` of the same model under a near-identity scaler at half the
learning rate (review R11-1 again, past the model lock).

Claim (SECURITY.md, `sampan.horizontal.secure_rounds`): the party "locks both model digests of the vector (fit
and evaluate) and both contents: neither part is unmasked for another survivor set, whether the coordinator asks
for ... the fit of the same model alone"; R11-1: "the same model under other settings (half the learning rate
...) gives inputs that are known linear maps of the first ones: parties now lock the model itself". The model
lock is the exact digest, and `request_digest` canonicalises only an exact identity scaler: mean = 1e-300,
scale = 1 leaves every feature bit-for-bit unchanged (the same model, another digest). With one full-batch step
(batch_size >= n, a public training setting the party accepts) the update is linear in the learning rate, so the
halved rate gives new content bytes, new encoded bytes and a new digest: no lock meets.

Attack (malicious coordinator, public party apps): the round's [fit | evaluation] over all five at lr 0.3, then a
plain secure fit of the same model (near-identity scaler) at lr 0.15 over the four others. sum_U - 2 * sum_{U-v}
is the victim's weighted update, i.e. its full-batch gradient on its training rows, exactly.

Suggested fix: canonicalise the scaler by its effect on the features (or refuse one whose mean/scale is a no-op
short of the exact identity), so the model lock sees one model; more robustly, bind the model lock to the
standardised inputs' hash and the parameters rather than to the request bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

from sampan.privacy.secagg import SecAggAbort  # noqa: E402
from sampan.wire import Message  # noqa: E402
from test_secagg_attempts import MODEL  # noqa: E402
from test_secagg_carried_evaluation import FIT, CarryingCoordinator  # noqa: E402
from test_secagg_cross_round import PARAMS, VICTIM  # noqa: E402

NEAR_IDENTITY = {"mean": np.full(3, 1e-300), "scale": np.ones(3)}
FULL_BATCH = {"epochs": 1, "batch_size": 1000, "learning_rate": 0.3}
HALF_RATE = {**FULL_BATCH, "learning_rate": 0.15}


@pytest.mark.xfail(strict=True, reason="R12-SAC-3: a plain fit of the round's model under a near-identity scaler "
                   "at half the learning rate unmasks the fit part for a second survivor set")
def test_the_fit_part_is_not_unmasked_again_under_a_near_identity_scaler_and_half_the_rate() -> None:
    c = CarryingCoordinator()
    others = [p for p in c.names if p != VICTIM]
    combined = c.attempt(c.names, "round-2/attempt-0/n", round_id="round-2", kind="fit+evaluate", train=FULL_BATCH)
    try:
        alone = c.attempt(others, "round-3/attempt-0/n", round_id="round-3", kind="fit", train=HALF_RATE,
                          extra=NEAR_IDENTITY)
    except SecAggAbort:  # the defence: every other party refuses a second unmasking of the model's fit
        assert set(c.errors) == set(others), c.errors
        return
    n_params = FIT - 3
    leaked = combined[:n_params] - 2 * alone[:n_params]
    reference = CarryingCoordinator().apps[VICTIM].handle(Message(
        "ref", 1, "coordinator", VICTIM, "fit", arrays={"params": PARAMS},
        meta={"model": MODEL, "train": FULL_BATCH, "seed": 11}))
    np.testing.assert_allclose(leaked, reference.arrays["update"] * 60 / 300, atol=1e-8)  # weight n/N = 60/300
    pytest.fail("the victim's update (its full-batch gradient) was isolated")
