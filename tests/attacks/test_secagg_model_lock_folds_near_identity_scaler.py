"""Pins the fix of review R12-SAC-3 (issue 12; was tests/attacks/review/test_secagg_carried_fit_scaler_digest.py): the
fit part of a round's combined vector is unmasked
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

Fix (in place): `request_digest` is canonical by what the model computes (scaler folded into the first layer,
`sampan.privacy.mods.canonical_arrays`), so the model lock sees one model. Was: canonicalise the scaler by its effect on
the features (or refuse one whose mean/scale is a no-op
short of the exact identity), so the model lock sees one model; more robustly, bind the model lock to the
standardised inputs' hash and the parameters rather than to the request bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path[:0] = [str(Path(__file__).resolve().parents[0]), str(Path(__file__).resolve().parents[1])]

from test_secagg_attempts import MODEL  # noqa: E402
from test_secagg_carried_evaluation import FIT, CarryingCoordinator  # noqa: E402
from test_secagg_cross_round import PARAMS, VICTIM  # noqa: E402

from sampan.privacy.secagg import SecAggAbort  # noqa: E402
from sampan.wire import Message  # noqa: E402

NEAR_IDENTITY = {"mean": np.full(3, 1e-300), "scale": np.ones(3)}
FULL_BATCH = {"epochs": 1, "batch_size": 1000, "learning_rate": 0.3}
HALF_RATE = {**FULL_BATCH, "learning_rate": 0.15}


def test_the_fit_part_is_not_unmasked_again_under_a_near_identity_scaler_and_half_the_rate() -> None:
    c = CarryingCoordinator()
    others = [p for p in c.names if p != VICTIM]
    combined = c.attempt(c.names, "round-2/attempt-0/n", round_id="round-2", kind="fit+evaluate", train=FULL_BATCH)
    try:
        alone = c.attempt(
            others, "round-3/attempt-0/n", round_id="round-3", kind="fit", train=HALF_RATE, extra=NEAR_IDENTITY
        )
    except SecAggAbort:  # the defence: every other party refuses a second unmasking of the model's fit
        assert set(c.errors) == set(others), c.errors
        return
    n_params = FIT - 3
    leaked = combined[:n_params] - 2 * alone[:n_params]
    reference = (
        CarryingCoordinator()
        .apps[VICTIM]
        .handle(
            Message(
                "ref",
                1,
                "coordinator",
                VICTIM,
                "fit",
                arrays={"params": PARAMS},
                meta={"model": MODEL, "train": FULL_BATCH, "seed": 11},
            )
        )
    )
    np.testing.assert_allclose(leaked, reference.arrays["update"] * 60 / 300, atol=1e-8)  # weight n/N = 60/300
    pytest.fail("the victim's update (its full-batch gradient) was isolated")


def test_the_model_digest_is_the_function_the_model_computes() -> None:
    """Scalers that leave the function unchanged digest alike; a changed function does not (logistic, MLP)."""
    from sampan.privacy.mods import request_digest

    def digest(config: dict, params: np.ndarray, **scaler: np.ndarray) -> str:
        return request_digest(
            "fit",
            Message("r", 1, "coordinator", "p", "fit", arrays={"params": params, **scaler}, meta={"model": config}),
        )

    rng = np.random.default_rng(3)
    for config, size in (
        ({"kind": "logistic", "n_features": 3}, 4),
        ({"kind": "mlp", "n_features": 3, "hidden": [4]}, 3 * 4 + 4 + 4 + 1),
    ):
        params = rng.normal(size=size)
        plain = digest(config, params)
        assert digest(config, params, **NEAR_IDENTITY) == plain
        assert digest(config, params, mean=np.zeros(3), scale=np.ones(3)) == plain
        if config["kind"] == "logistic":  # the first layer's weights x2 under scale 2: the same function
            scaled = np.concatenate([params[:3] * 2.0, params[3:]])
        else:
            scaled = np.concatenate([(params[:12].reshape(3, 4) * 2.0).ravel(), params[12:]])
        assert digest(config, scaled, mean=np.zeros(3), scale=np.full(3, 2.0)) == plain
        moved = params.copy()
        moved[0] += 1e-6 * abs(params).max()
        assert digest(config, moved) != plain  # a model that computes something else is another model
        assert digest(config, params, mean=np.full(3, 0.5), scale=np.ones(3)) != plain
