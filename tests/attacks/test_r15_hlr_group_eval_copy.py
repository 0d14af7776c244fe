"""R15-HLR-2 (fixed): a horizontal LR bank's group evaluation no longer copies its whole holdout matrix.

Attack / validation (issue 15 item 2, "evaluation ... in memory proportional to a batch"): a coordinator whose run
declares ``[evaluation] groups`` asks a bank, after its counted evaluation, for the per-group score histograms
(`evaluate_groups`). T6 made `evaluate` score the holdout per row block (`block_scores`, only the scores vector
is whole). Expected: `evaluate_groups` (the same scores, binned per group level) also works per block: its peak
grows by the scores vector and a few masks per holdout row, under one float64 copy of the holdout (8 bytes per
feature per row). What happens: the handler (`sampan.horizontal.group_evaluation`, line 164) calls
``party._scaled.get("test", ...)``, which is ``ScaledRows[:]``: the whole holdout filled and standardised as one
float64 matrix (its docstring says so), then ``predict_proba`` on it; the peak grows by two such copies (the
``X - mean`` temporary and the result): 160 bytes per holdout row at 10 features, ~480 at 30. Fixed: the handler
scores the holdout with `block_scores` (the same per-block scores `evaluate` bins), so the counts are those of the
run's counted evaluation and the peak grows by the scores vector and the level masks only.
"""

from __future__ import annotations

import tracemalloc

import numpy as np

from sampan.core.capability import PartySetup
from sampan.core.party import PartyApp
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL
from sampan.horizontal.group_evaluation import EVALUATE_GROUPS, GROUP_BINS
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.wire import Message

D = 10
MODEL = {"kind": "logistic", "n_features": D}
GROUPS = [{"column": "x1", "feature": "x1", "cuts": [3.0]}]


def _table(n: int, seed: int) -> PartyData:
    rng = np.random.default_rng(seed)
    X = rng.normal(3.0, 2.0, size=(n, D))
    return PartyData(party="bank", ids=np.array([f"r{i}" for i in range(n)], dtype=object), X=X,
                     y=(X[:, 0] + rng.normal(scale=2.0, size=n) > 3.0).astype(np.int8),
                     feature_names=[f"x{j}" for j in range(D)])


def _peak_per_group_evaluation(n_holdout: int) -> int:
    setup = PartySetup("bank", (_table(1000, 1), _table(n_holdout, 2)), {"workflow": "horizontal", "groups": True},
                       policy=PartyPrivacyPolicy(), options={})
    app: PartyApp = HORIZONTAL.party_app(setup)
    arrays = {"params": np.r_[0.1, np.linspace(-1.0, 1.0, D)], "mean": np.full(D, 3.0), "scale": np.full(D, 2.0)}

    def ask(kind: str, **meta: object) -> Message:
        reply = app.handle(Message("run-1", 1, "coordinator", "bank", kind, arrays=arrays, meta=dict(meta)))
        assert not reply.is_error, reply.meta
        return reply

    ask("evaluate", model=MODEL)  # the run's counted evaluation (a group release needs it first)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        ask(EVALUATE_GROUPS, model=MODEL, groups=GROUPS, bins=GROUP_BINS)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_group_evaluation_memory_stays_under_a_copy_of_the_holdout() -> None:
    small, large = _peak_per_group_evaluation(100_000), _peak_per_group_evaluation(200_000)
    per_row = (large - small) / 100_000
    copy = 8 * D  # one float64 copy of a holdout row
    assert per_row < copy, f"evaluate_groups' peak grows by {per_row:.1f} bytes per holdout row (copy: {copy})"


def test_group_counts_are_those_of_the_whole_matrix_scores() -> None:
    """The per-block scores bin exactly as the former whole-matrix scores: the released counts are unchanged."""
    from sampan.horizontal.group_evaluation import group_counts
    from sampan.models import model_from_config

    test = _table(5000, 2)
    setup = PartySetup("bank", (_table(1000, 1), test), {"workflow": "horizontal", "groups": True},
                       policy=PartyPrivacyPolicy(), options={})
    app: PartyApp = HORIZONTAL.party_app(setup)
    arrays = {"params": np.r_[0.1, np.linspace(-1.0, 1.0, D)], "mean": np.full(D, 3.0), "scale": np.full(D, 2.0)}
    for kind, meta in (("evaluate", {"model": MODEL}),
                       (EVALUATE_GROUPS, {"model": MODEL, "groups": GROUPS, "bins": GROUP_BINS})):
        reply = app.handle(Message("run-1", 1, "coordinator", "bank", kind, arrays=arrays, meta=meta))
        assert not reply.is_error, reply.meta
    whole = model_from_config(MODEL).predict_proba(arrays["params"], (test.X - arrays["mean"]) / arrays["scale"])
    pos, neg = group_counts(test.X, test.feature_names, test.y, whole, GROUPS)
    assert reply.arrays["pos"].tobytes() == pos.tobytes() and reply.arrays["neg"].tobytes() == neg.tobytes()
