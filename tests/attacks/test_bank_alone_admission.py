"""Review (issue 13) of "each bank alone vs the consortium" (`sampan.horizontal.local_comparison`,
`sampan.privacy.local_comparison_mod`), through a bank's public `PartyApp`, as a curious coordinator.

R13-BA-1: without DP, `bank_alone` is an exact release about the bank's holdout (two histograms of its labels,
up to 2000 bins, under a model the coordinator chooses), yet it is not counted against the bank's
`max_evaluations` (review R11-5: "every run that evaluates the holdout counts"; `group_release_mod` requires the
run's counted evaluation first, `local_comparison_mod` does not). A bank whose cap is spent still answers, in
any number of fresh runs, with a crafted model that puts each holdout row in its own bin. As for a non-DP
`evaluate`, each single-row bin's exact ``sum_p`` inverts to the row's score, so with params (1, 0, 0) the
reply gives 18 of 20 holdout rows' exact feature value (to 1e-10) and label: the cap is the only bound on
that, and this door skips it.

R13-BA-2: under DP the mod checks the consortium model by its digest, which folds the scaler into the weights
(`canonical_arrays`), but the local-only model is TRAINED on the request's scaler. So a coordinator may send
any scaler that folds to the evaluated model: standardising feature a as 1e4 * (a - t) (params pre-divided so
the consortium function, and digest, are unchanged) turns the DP-SGD local model into a step at a = t, and its
exact holdout histogram into the label counts of {a > t} and {a <= t}: a second holdout query of the
coordinator's choosing in a DP run, beyond the one evaluated model per run that `max_evaluations` counts.

R13-BA-4: the run's DP flag (`PartyDPState.dp_runs`) and the "once per run" memory live in memory, while the
evaluated-model record survives a restart. After a bank restarts mid-run (its policy not itself requiring DP),
a `bank_alone` without ``dp2`` in the same DP run takes the exact path: the local-only model trained WITHOUT
DP-SGD on the training rows (the run's DP unit), 2000 bins, any consortium model, nothing charged. The
deployed gate (job announced DP => dp2) covers agents, not the library's PartyApp (same root as R13-GRP-4).

R13-BA-5: `compare_with` builds the local-only model from the request's ``meta.model`` and calls `init_params`
before anything bounds its size (only ``n_features`` is checked); unlike `fit`/`evaluate`, no parameters need
to travel, so a few-byte request ({"kind": "mlp", "hidden": [10**9]}) makes each bank allocate 32 GB (an
agent OOM). The deployed gate does not check the model of a `bank_alone` against the job's model either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sampan.core.capability import PartySetup
from sampan.core.party import PartyApp
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL
from sampan.metrics.histogram import MAX_BINS
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.wire import Message

MODEL = {"kind": "logistic", "n_features": 2}
TRAIN = {"epochs": 1, "batch_size": 16, "learning_rate": 0.1, "optimizer": "sgd", "momentum": 0.0, "l2": 0.0,
         "max_steps": None}


def _table(n: int, seed: int) -> PartyData:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return PartyData(party="bank", ids=np.array([f"r{i}" for i in range(n)], dtype=object), X=X,
                     y=(X[:, 0] + rng.normal(scale=0.5, size=n) > 0).astype(np.int8), feature_names=["a", "b"])


def _bank(**options: object) -> PartyApp:
    setup = PartySetup("bank", (_table(200, 1), _table(20, 2)), {"workflow": "horizontal", "bank_alone": True},
                       policy=PartyPrivacyPolicy(), options=dict(options))
    return HORIZONTAL.party_app(setup)


def _ask(app: PartyApp, run: str, kind: str, arrays: dict[str, np.ndarray], **meta: object) -> Message:
    return app.handle(Message(run, 1, "coordinator", "bank", kind, arrays=arrays, meta=dict(meta)))


def test_bank_alone_counts_against_max_evaluations() -> None:
    app = _bank(max_evaluations=1)
    model = {"params": np.array([1.0, 0.0, 0.0])}
    assert not _ask(app, "run-1", "evaluate", model, model=MODEL).is_error  # the bank's one evaluation
    capped = _ask(app, "run-2", "evaluate", model, model=MODEL)
    assert capped.is_error and "max_evaluations" in capped.meta["error"]  # the cap holds for `evaluate`
    # the coordinator's crafted "consortium" model: a steep score on feature a, so holdout rows spread over the
    # 2000 bins (one row per bin for distinct values); the reply gives each bin's label counts
    crafted = {"params": np.array([40.0, 0.0, 0.0])}
    reply = _ask(app, "run-2", "bank_alone", crafted, model=MODEL, train=TRAIN, seed=1, bins=MAX_BINS)
    if not reply.is_error:  # what it leaks today: holdout labels, row by row where bins hold one row
        pos, neg = reply.arrays["consortium.pos"], reply.arrays["consortium.neg"]
        assert int(((pos + neg) == 1).sum()) > 0
    assert reply.is_error, "bank_alone answered after max_evaluations was spent (an uncounted holdout release)"


def test_under_dp_the_local_only_model_trains_on_the_evaluated_scaler() -> None:
    from sampan.metrics.histogram import DP_BINS

    app = _bank()
    run = "run-dp"
    described = _ask(app, run, "describe", {}, dp_count={"noise_multiplier": 1.0})
    rows = int(described.meta["n_train"])
    evaluated = {"params": np.array([1.0, 0.0, 0.0]), "mean": np.zeros(2), "scale": np.ones(2)}
    assert not _ask(app, run, "evaluate", evaluated, model=MODEL, bins=DP_BINS, public_rows=rows).is_error
    # the same FUNCTION (the digest folds the scaler), but feature a standardised as 1e4 * (a - t), b as ~0: the
    # DP-SGD local model becomes a step at a = t, and its holdout histogram the label counts of {a > t}, {a <= t}
    t = 0.3
    steered = {"params": np.array([1e-4, 0.0, t]), "mean": np.array([t, 0.0]), "scale": np.array([1e-4, 1e6])}
    train = {**TRAIN, "learning_rate": 20.0, "epochs": 2}  # a large step: the sign of the first updates decides
    reply = _ask(app, run, "bank_alone", steered, model=MODEL, train=train, seed=3, bins=DP_BINS,
                 dp2={"noise_multiplier": 1.0, "max_grad_norm": 1.0}, public_rows=rows)
    if not reply.is_error:  # today: two bins, the holdout's (pos, neg) counts for a > t and for a <= t
        holdout = _table(20, 2)
        above = holdout.X[:, 0] > t
        truth = {(int(holdout.y[m].sum()), int((1 - holdout.y[m]).sum())) for m in (above, ~above)}
        pos, neg = reply.arrays["local.pos"], reply.arrays["local.neg"]
        filled = np.flatnonzero(pos + neg)
        assert {(int(pos[i]), int(neg[i])) for i in filled} == truth, filled
    assert reply.is_error, "the local-only model trained on a coordinator-steered scaler"


def test_a_restarted_bank_never_answers_a_dp_runs_comparison_without_dp_sgd(tmp_path: Path) -> None:
    from sampan.metrics.histogram import DP_BINS

    policy = PartyPrivacyPolicy()  # the bank does not itself require DP; the run is a DP run

    def bank() -> PartyApp:
        setup = PartySetup("bank", (_table(200, 1), _table(20, 2)), {"workflow": "horizontal", "bank_alone": True},
                           policy=policy, state_dir=tmp_path)
        return HORIZONTAL.party_app(setup)

    first, run = bank(), "run-dp"
    rows = int(_ask(first, run, "describe", {}, dp_count={"noise_multiplier": 1.0}).meta["n_train"])
    model = {"params": np.array([1.0, 0.0, 0.0])}
    assert not _ask(first, run, "evaluate", model, model=MODEL, bins=DP_BINS, public_rows=rows).is_error
    before = _ask(first, run, "bank_alone", model, model=MODEL, train=TRAIN, seed=1, bins=MAX_BINS)
    assert before.is_error and "DP-SGD" in before.meta["error"]  # while it runs: refused
    restarted = bank()  # the agent restarts; its state dir (evaluated.json) and ledger stay
    reply = _ask(restarted, run, "bank_alone", model, model=MODEL, train=TRAIN, seed=1, bins=MAX_BINS)
    assert reply.is_error, "a DP run's comparison answered exactly (non-DP local-only model, fine bins)"


def test_a_huge_model_config_is_refused_before_the_bank_allocates_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sampan.models.mlp

    sizes: list[int] = []

    def recording_init(self: sampan.models.mlp.MLP, rng: np.random.Generator) -> np.ndarray:
        sizes.append(int(self.n_params))  # never allocate here: the test only records what the bank would build
        raise MemoryError("the bank would allocate this model")

    monkeypatch.setattr(sampan.models.mlp.MLP, "init_params", recording_init)
    app = _bank()
    huge = {"kind": "mlp", "n_features": 2, "hidden": [10**9]}  # the message itself is a few bytes
    _ask(app, "run-1", "bank_alone", {"params": np.zeros(3)}, model=huge, train=TRAIN, seed=1, bins=10)
    assert not any(n > 10**7 for n in sizes), f"the bank began allocating a {max(sizes)}-parameter model"
