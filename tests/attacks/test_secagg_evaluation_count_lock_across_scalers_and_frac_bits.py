"""Pins the fix of review R12-SAC-2 (issue 12; was tests/attacks/review/test_secagg_evaluate_scaler_digest.py)
(pre-existing, found while reviewing the carried
evaluation): two separate secure `evaluate`s of the same model are bound to one survivor set only by the exact
model digest and by the `encoded/<frac_bits>/<size>` lock; `secagg_vector` gives an evaluation no content lock.

A near-identity scaler (mean = 1e-300, scale = 1: every feature bit-for-bit unchanged) changes the digest
(`request_digest` canonicalises only an exact identity scaler), and a coordinator-chosen `frac_bits` (any value
in [1, 52]) changes the encoded bytes: the same model's evaluation is unmasked over all five, then over the four
others, and the difference is the victim's holdout histogram (counts exact), loss and Brier sums and row count.
SECURITY.md: "a party unmasks one model for one survivor set only, in any run"; `request_digest`: "a request that
computes the same thing digests alike (review R7-2)".

Fix (in place): `evaluation_lock` (exact integer counts and n, independent of frac_bits and scaler) on every
secure evaluation, and the scaler folded into the model digest. Was: a content lock for evaluations (the exact
evaluation vector before encoding, as a fit's update
is locked before its n/N weight), the same bytes a carried evaluation locks (see R12-SAC-1); and a scaler
canonicalisation by effect (or refusal of a scaler that is a no-op on the features yet not exactly the identity).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path[:0] = [str(Path(__file__).resolve().parents[0]), str(Path(__file__).resolve().parents[1])]

from test_secagg_attempts import MODEL  # noqa: E402
from test_secagg_cross_round import PARAMS, VICTIM, Coordinator, _victim_alone  # noqa: E402

import sampan.privacy.secagg.server as secagg_server  # noqa: E402
from sampan.metrics.histogram import DEFAULT_BINS  # noqa: E402
from sampan.privacy.secagg import SecAggAbort, SecAggParams, SecAggServer, decode_vector  # noqa: E402
from sampan.wire import Message  # noqa: E402

NEAR_IDENTITY = {"mean": np.full(3, 1e-300), "scale": np.ones(3)}


def _evaluate(
    c: Coordinator, parties: list[str], label: str, frac_bits: int, extra: Mapping[str, np.ndarray] | None = None
) -> np.ndarray:
    srv = SecAggServer(
        SecAggParams(frac_bits=frac_bits, max_abs=1e6),
        parties,
        3 * DEFAULT_BINS + 3,
        f"run-A/{label}",
        np.random.default_rng(5),
        round_id=label.split("/")[0],
    )

    def call(step: str, party: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Any:
        arrays, meta = dict(arrays), dict(meta)
        if step == "fit":
            step, meta = "evaluate", {"model": MODEL, "bins": DEFAULT_BINS, "secagg": meta}
            arrays = {"params": PARAMS, **(extra or {}), **arrays}
        reply = c.apps[party].handle(Message("run-A", 1, "coordinator", party, step, arrays=arrays, meta=meta))
        if reply.is_error:
            c.errors[party] = str(reply.meta["error"])
            return None
        return dict(reply.arrays)

    return decode_vector(secagg_server.run_secagg(srv, call), srv.params)


def test_one_models_evaluation_is_not_unmasked_for_two_survivor_sets_under_a_near_identity_scaler() -> None:
    c = Coordinator()
    others = [p for p in c.names if p != VICTIM]
    with_victim = _evaluate(c, c.names, "evaluate-1/attempt-0/n", 16)
    try:
        without = _evaluate(c, others, "evaluate-2/attempt-0/n", 17, NEAR_IDENTITY)
    except SecAggAbort:  # the defence: every other party refuses
        assert set(c.errors) == set(others), c.errors
        return
    leaked, truth = with_victim - without, _victim_alone("evaluate")
    np.testing.assert_array_equal(np.rint(leaked[: 2 * DEFAULT_BINS]), truth[: 2 * DEFAULT_BINS])
    assert round(leaked[-1]) == truth[-1] == 20
    np.testing.assert_allclose(leaked[-3:-1], truth[-3:-1], atol=1e-2)
    pytest.fail("the victim's holdout evaluation was isolated (counts exact, loss and Brier sums)")
