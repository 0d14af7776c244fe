"""Review (issue 12, horizontal DP mods): DP2 (`dp2_mod`, DP-SGD) promises that a party's update is the output of
a subsampled Gaussian mechanism whose per-example gradients are clipped to `max_grad_norm` (sensitivity bounded
whatever the row), charged write-ahead by the party's ledger.

R12-HOR-6: the party standardises its rows with whatever scaler the `fit` request carries (arrays ``mean`` /
``scale``, coordinator-chosen; nothing checks they are finite-producing or came from the DP1 release). With
``scale = 1e-308`` a feature value x becomes x·1e308, i.e. +-inf exactly when |x| > ~1.8. An infinite feature
makes that example's logit 0·inf = NaN; `clip_rows` cannot bound a NaN gradient (its norm is NaN, so is the
scale factor), and the NaN survives the Gaussian noise. The DP-SGD "release" is then NaN iff SOME row has
|x_0| > t (q = 1 via a small `public_rows`): neighbouring datasets (one extra record with x_0 = 3) are told apart
with certainty (ε = ∞) although every step was charged. The same oracle works under DP3 and SecAgg as an error.
Fix: clip_rows / the DP2 mod must map non-finite per-example gradients to a data-independent value (e.g. zero),
and the party should refuse a scaler that is not finite and positive (or, under DP1, not its released one).
"""

from __future__ import annotations

import numpy as np

from sampan.core.capability import PartySetup
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.wire import Message

FEATURES = ["f0", "f1", "f2"]


def _fit(X: np.ndarray, y: np.ndarray, run: str) -> Message:
    data = PartyData(party="bank", ids=np.array([f"r{i}" for i in range(len(X))], dtype=object), X=X, y=y,
                     feature_names=FEATURES)
    holdout = PartyData(party="bank", ids=np.array(["h0"], dtype=object), X=np.zeros((1, 3)),
                        y=np.zeros(1, dtype=np.int8), feature_names=FEATURES)
    app = HORIZONTAL.party_app(PartySetup("bank", (data, holdout), {"workflow": "horizontal", "model": "logistic"},
                                          policy=PartyPrivacyPolicy(required_levels=frozenset({"DP"}))))
    return app.handle(Message(run, 1, "coordinator", "bank", "fit",
                              arrays={"params": np.zeros(4), "mean": np.zeros(3), "scale": np.full(3, 1e-308)},
                              meta={"model": {"kind": "logistic", "n_features": 3}, "seed": 0, "public_rows": 1,
                                    "train": {"epochs": 1, "batch_size": 1, "learning_rate": 0.1},
                                    "dp2": {"noise_multiplier": 1.0, "max_grad_norm": 1.0}}))


def test_dp_sgd_release_does_not_reveal_one_record() -> None:
    rng = np.random.default_rng(4)
    X = rng.uniform(-1.5, 1.5, size=(50, 3))
    y = (rng.random(50) < 0.5).astype(np.int8)
    base = _fit(X, y, "run-d")
    neighbour = _fit(np.vstack([X, [[3.0, 0.0, 0.0]]]), np.r_[y, 1].astype(np.int8), "run-d-prime")
    assert not base.is_error and not neighbour.is_error, (base.meta, neighbour.meta)
    finite = bool(np.all(np.isfinite(base.arrays["update"]))), bool(np.all(np.isfinite(neighbour.arrays["update"])))
    assert finite[0] == finite[1], f"DP-SGD output finite for D: {finite[0]}, for D + one record: {finite[1]}"


def test_clipped_sum_zeroes_each_non_finite_example_alone() -> None:
    """Each example's contribution is a function of that example only: a NaN example adds zero (counted as
    clipped), the others are clipped exactly as the one-pass ghost clipping clips them."""
    from sampan.models import model_from_config
    from sampan.privacy.dpsgd import clip_rows, clipped_sum

    model = model_from_config({"kind": "logistic", "n_features": 3})
    rng = np.random.default_rng(0)
    X, y, params = rng.normal(size=(20, 3)) * 5, (rng.random(20) < .5).astype(float), rng.normal(size=4)
    clean, k_clean, _ = clipped_sum(model, params, X, y, 1.0)
    dirty, k_dirty, _ = clipped_sum(model, params, np.vstack([X, [[np.inf, 0, 0]]]), np.r_[y, 1.0], 1.0)
    assert np.all(np.isfinite(dirty)) and np.allclose(clean, dirty) and k_dirty == k_clean + 1
    rows, clipped = clip_rows(np.array([[np.nan, 1.0], [3.0, 4.0], [1e300, 1e300], [0.1, 0.0]]), 1.0)
    assert np.all(np.isfinite(rows)) and np.all(np.linalg.norm(rows, axis=1) <= 1.0 + 1e-12) and clipped == 3


def test_party_refuses_a_non_finite_or_non_positive_scaler() -> None:
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(30, 3)), (rng.random(30) < .5).astype(np.int8)
    data = PartyData(party="bank", ids=np.array([f"r{i}" for i in range(30)], dtype=object), X=X, y=y,
                     feature_names=FEATURES)
    app = HORIZONTAL.party_app(PartySetup("bank", (data, data), {"workflow": "horizontal", "model": "logistic"}))
    for scale in (np.zeros(3), np.full(3, -1.0), np.full(3, np.inf), np.full(3, np.nan)):
        reply = app.handle(Message("run-s", 1, "coordinator", "bank", "fit",
                                   arrays={"params": np.zeros(4), "mean": np.zeros(3), "scale": scale},
                                   meta={"model": {"kind": "logistic", "n_features": 3}, "seed": 0,
                                         "train": {"epochs": 1, "batch_size": 8, "learning_rate": 0.1}}))
        assert reply.is_error and "scaler" in str(reply.meta), (scale, reply.meta)
