"""A secure `fit` that carries the evaluation of its model in the same masked vector (issue 12: one SecAgg
instance per round). A malicious coordinator drives the real horizontal parties and tries to use the
combined vector to unmask one model's evaluation (or its update) for two survivor sets:

- unmask the fit part and the evaluation part for different survivor sets: the vector is one input, unmasked
  once; asking again for either part on its own (an `evaluate` of the same model, a plain `fit` of it) over
  another survivor set is refused, in either order, because the party locks BOTH model digests (fit and
  evaluate) of the combined vector to its first survivor set;
- replay the combined fit (another attempt of the round, another round name, another run) over another
  survivor set to get a second evaluation of the same model: refused;
- a carried evaluation under DP (where only the released model is evaluated, in its own request), or with
  another binning: refused before anything is computed.

Controls: the honest combined vector sums to [fit sum | evaluation sum], and its evaluation part equals a
separate secure evaluation of the same model (run on a fresh consortium).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from test_secagg_attempts import MODEL, TRAIN
from test_secagg_cross_round import PARAMS, VICTIM, Coordinator

import sampan.privacy.secagg.server as secagg_server
from sampan.metrics.histogram import DEFAULT_BINS
from sampan.privacy.fit_evaluation import evaluation_scale
from sampan.privacy.secagg import SecAggAbort, SecAggParams, SecAggServer, decode_vector
from sampan.wire import Message

FIT = PARAMS.size + 3
EVAL = 3 * DEFAULT_BINS + 3
FRAC_BITS = 32


class CarryingCoordinator(Coordinator):
    """`attempt` with kind "fit+evaluate": a fit request that also carries ``evaluate`` (one vector)."""

    def attempt(self, parties: list[str], label: str, *, run: str = "run-A", round_id: str = "round-1",
                extra: Mapping[str, np.ndarray] | None = None, kind: str = "fit", total_rows: int = 300,
                train: Mapping[str, Any] | None = None, bins: int = DEFAULT_BINS,
                meta_extra: Mapping[str, Any] | None = None) -> np.ndarray:
        evaluating_only = kind == "evaluate"
        sa = SecAggParams(frac_bits=16 if evaluating_only else FRAC_BITS, max_abs=1e6 if evaluating_only else 1e4)
        length = {"fit": FIT, "evaluate": EVAL, "fit+evaluate": FIT + EVAL}[kind]
        srv = SecAggServer(sa, parties, length, f"{run}/{label}", np.random.default_rng(5), round_id=round_id)

        def call(step: str, party: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Any:
            arrays, meta = dict(arrays), dict(meta)
            if step == "fit":
                if evaluating_only:
                    step, fit = "evaluate", {"model": MODEL, "bins": bins, "secagg": meta}
                else:
                    fit = {"model": MODEL, "train": dict(train or TRAIN), "seed": 11,
                           "secagg": {**meta, "total_rows": total_rows}, **(meta_extra or {})}
                    if kind == "fit+evaluate":
                        fit["evaluate"] = {"bins": bins}
                arrays, meta = {"params": PARAMS, **(extra or {}), **arrays}, fit
            reply = self.apps[party].handle(Message(run, 1, "coordinator", party, step, arrays=arrays, meta=meta))
            if reply.is_error:
                self.errors[party] = str(reply.meta["error"])
                return None
            return dict(reply.arrays)

        return decode_vector(secagg_server.run_secagg(srv, call), srv.params)


def _others(c: Coordinator) -> list[str]:
    return [p for p in c.names if p != VICTIM]


def _refused_by_the_others(c: Coordinator, *why: str) -> None:
    assert set(c.errors) == set(_others(c)), c.errors
    assert all(any(w in e for w in why) for e in c.errors.values()), c.errors


LOCKED = ("already revealed unmask shares", "it unmasked this very global model",
          "it unmasked this very input for another survivor set",
          # refused before masking: the model's digest already holds the (other-shaped) vector it masked
          "was contributed to with a vector of another shape", "were contributed to with different inputs")


def test_the_combined_vector_sums_to_the_fit_sum_and_the_evaluation_of_the_same_model() -> None:
    """Control: one unmasking gives [fit | evaluation]; the evaluation part is what a separate secure
    evaluation of the same model gives (on a fresh consortium), and the fit part what a plain secure fit gives."""
    combined = CarryingCoordinator().attempt(CarryingCoordinator().names, "round-1/attempt-0/n", kind="fit+evaluate")
    c_fit, c_eval = CarryingCoordinator(), CarryingCoordinator()
    fit = c_fit.attempt(c_fit.names, "round-1/attempt-0/n", kind="fit")
    evaluation = c_eval.attempt(c_eval.names, "evaluate-1/attempt-0/n", round_id="evaluate-1", kind="evaluate")
    np.testing.assert_allclose(combined[:FIT], fit, atol=1e-8)
    carried = combined[FIT:] / evaluation_scale(FRAC_BITS)
    np.testing.assert_allclose(carried, evaluation, atol=1e-3)
    assert round(carried[-1]) == 100  # five holdouts of 20 rows


@pytest.mark.parametrize("then", ["evaluate", "fit"])
def test_the_fit_part_and_the_evaluation_part_are_not_unmasked_for_different_survivor_sets(then: str) -> None:
    """The combined vector over all five, then either part of the same model alone over the four others (another
    round name): their difference would be the victim's holdout histogram (or its update). Refused."""
    c = CarryingCoordinator()
    c.attempt(c.names, "round-2/attempt-0/n", round_id="round-2", kind="fit+evaluate")
    with pytest.raises(SecAggAbort):
        c.attempt(_others(c), "evaluate-1/attempt-0/n", round_id="evaluate-1", kind=then)
    _refused_by_the_others(c, *LOCKED)


@pytest.mark.parametrize("first", ["evaluate", "fit"])
def test_a_part_unmasked_alone_first_is_not_carried_again_for_another_survivor_set(first: str) -> None:
    """The other order: the model's evaluation (or its fit) over all five first, then the combined vector over the
    four others. Refused: the combined vector is locked by both model digests."""
    c = CarryingCoordinator()
    c.attempt(c.names, "evaluate-1/attempt-0/n", round_id="evaluate-1", kind=first)
    with pytest.raises(SecAggAbort):
        c.attempt(_others(c), "round-2/attempt-0/n", round_id="round-2", kind="fit+evaluate")
    _refused_by_the_others(c, *LOCKED)


@pytest.mark.parametrize("replay", ["attempt", "round", "run"])
def test_a_replayed_fit_does_not_give_a_second_evaluation_of_the_same_model(replay: str) -> None:
    """The combined fit is replayed over the four others — as a retry of the round (fresh keys), under a new round
    name, or in a new run — to get the same model's evaluation (and update) without the victim. Refused."""
    c = CarryingCoordinator()
    c.attempt(c.names, "round-2/attempt-0/n", round_id="round-2", kind="fit+evaluate")
    label, round_id, run = {"attempt": ("round-2/attempt-1/n", "round-2", "run-A"),
                            "round": ("round-3/attempt-0/n", "round-3", "run-A"),
                            "run": ("round-2/attempt-0/n", "round-2", "run-B")}[replay]
    with pytest.raises(SecAggAbort):
        c.attempt(_others(c), label, round_id=round_id, run=run, kind="fit+evaluate")
    _refused_by_the_others(c, *LOCKED)


def test_an_honest_retry_over_the_same_survivors_still_completes() -> None:
    """Control: a retry of the round over the same survivor set sums to the same vector (nothing new learnt)."""
    c = CarryingCoordinator()
    first = c.attempt(c.names, "round-2/attempt-0/n", round_id="round-2", kind="fit+evaluate")
    again = c.attempt(c.names, "round-2/attempt-1/n", round_id="round-2", kind="fit+evaluate")
    np.testing.assert_array_equal(again, first)
    assert not c.errors


def test_a_carried_evaluation_is_refused_under_dp_and_with_another_binning() -> None:
    """Under DP only the released model is evaluated, once, in its own request; under SecAgg a party bins at
    exactly the default. Both are refused before the party computes anything (every party errs: abort)."""
    c = CarryingCoordinator()
    with pytest.raises(SecAggAbort):
        c.attempt(c.names, "round-2/attempt-0/n", round_id="round-2", kind="fit+evaluate",
                  meta_extra={"public_rows": 60})
    assert c.errors and all("refuses a 'fit' that carries an evaluation" in e for e in c.errors.values()), c.errors
    c = CarryingCoordinator()
    with pytest.raises(SecAggAbort):
        c.attempt(c.names, "round-2/attempt-0/n", round_id="round-2", kind="fit+evaluate", bins=40)
    assert c.errors and all("refuses bins=40" in e for e in c.errors.values()), c.errors
