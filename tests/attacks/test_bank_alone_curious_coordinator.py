"""A curious coordinator tries to learn more through a bank's "each bank alone" answer than the protocol says
(`sampan.horizontal.local_comparison`, `sampan.privacy.local_comparison_mod`), and fails:

- under DP it asks for the comparison on a model other than the one the bank evaluated in the run (a second
  model's evaluation through this door): refused;
- it asks twice in one run (a second DP-SGD release, averaging the noise away): the same reply, no new charge;
- it asks for fine bins, or without DP-SGD settings, in a DP run: refused before anything is computed or charged;
- every refusal leaves the bank's own ledger untouched; an accepted one charges it exactly one DP2 release.
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.core.capability import PartySetup
from sampan.core.party import PartyApp
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL
from sampan.metrics.histogram import DP_BINS
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.wire import Message

FEATURES = ["a", "b"]
MODEL = {"kind": "logistic", "n_features": 2}
TRAIN = {"epochs": 2, "batch_size": 16, "learning_rate": 0.1, "optimizer": "sgd", "momentum": 0.0, "l2": 0.0,
         "max_steps": None}
DP2 = {"noise_multiplier": 1.0, "max_grad_norm": 1.0}


def _table(n: int, seed: int) -> PartyData:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return PartyData(party="bank", ids=np.array([f"r{i}" for i in range(n)], dtype=object), X=X,
                     y=(X[:, 0] + rng.normal(scale=0.5, size=n) > 0).astype(np.int8), feature_names=FEATURES)


def _bank() -> tuple[PartyApp, PartyPrivacyPolicy]:
    policy = PartyPrivacyPolicy()
    setup = PartySetup("bank", (_table(300, 1), _table(80, 2)), {"workflow": "horizontal", "bank_alone": True},
                       policy=policy)
    return HORIZONTAL.party_app(setup), policy


def _ask(app: PartyApp, run: str, kind: str, params: np.ndarray | None = None, **meta: object) -> Message:
    arrays = {"params": params} if params is not None else {}
    return app.handle(Message(run, 1, "coordinator", "bank", kind, arrays=arrays, meta=dict(meta)))


def _dp_run(app: PartyApp, run: str, evaluated: np.ndarray) -> int:
    """A DP run as far as its final evaluation: the released count, then the one evaluated model."""
    described = _ask(app, run, "describe", dp_count={"noise_multiplier": 1.0})
    assert not described.is_error
    assert not _ask(app, run, "evaluate", evaluated, model=MODEL, bins=DP_BINS, public_rows=1).is_error
    return int(described.meta["n_train"])


def _comparison(app: PartyApp, run: str, params: np.ndarray, rows: int, **extra: object) -> Message:
    meta: dict[str, object] = {"model": MODEL, "train": TRAIN, "seed": 3, "bins": DP_BINS, "dp2": DP2,
                               "public_rows": rows}
    meta.update(extra)
    return _ask(app, run, "bank_alone", params, **{k: v for k, v in meta.items() if v is not None})


def _charges(policy: PartyPrivacyPolicy) -> int:
    return len(policy.ledger("bank").events)


def test_under_dp_a_second_model_cannot_be_evaluated_through_the_comparison() -> None:
    app, policy = _bank()
    evaluated, other = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    rows = _dp_run(app, "run-1", evaluated)
    before = _charges(policy)
    refused = _comparison(app, "run-1", other, rows)
    assert refused.is_error and "the one it evaluated" in refused.meta["error"]
    assert _charges(policy) == before  # nothing charged, nothing computed


@pytest.mark.parametrize("change", [{"bins": 2000}, {"dp2": None}])
def test_under_dp_fine_bins_or_a_local_model_without_dp_sgd_are_refused(change: dict[str, object]) -> None:
    app, policy = _bank()
    model = np.array([1.0, 0.0, 0.0])
    rows = _dp_run(app, "run-1", model)
    before = _charges(policy)
    refused = _comparison(app, "run-1", model, rows, **change)
    assert refused.is_error and "refuses 'bank_alone'" in refused.meta["error"]
    assert _charges(policy) == before


def test_a_repeated_request_gets_the_same_release_and_no_second_charge() -> None:
    app, policy = _bank()
    model = np.array([1.0, 0.0, 0.0])
    rows = _dp_run(app, "run-1", model)
    before = _charges(policy)
    first = _comparison(app, "run-1", model, rows)
    assert not first.is_error and _charges(policy) == before + 1  # one DP2 release, charged by the bank itself
    assert [e.level for e in policy.ledger("bank").events][-1] == "DP2"
    again = _comparison(app, "run-1", model, rows, seed=4)
    assert _charges(policy) == before + 1
    assert all(np.array_equal(first.arrays[k], again.arrays[k]) for k in first.arrays)
    assert len(first.arrays["local.edges"]) == DP_BINS + 1  # at the DP resolution, sums at bin midpoints


def test_without_the_job_asking_for_it_a_bank_does_not_answer() -> None:
    setup = PartySetup("bank", (_table(300, 1), _table(80, 2)), {"workflow": "horizontal"})
    app = HORIZONTAL.party_app(setup)
    reply = _comparison(app, "run-1", np.zeros(3), 300, dp2=None, public_rows=None, bins=10)
    assert reply.is_error and "bank_alone" in reply.meta["error"]
