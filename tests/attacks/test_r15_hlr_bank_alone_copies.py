"""R15-HLR-1 (fixed): a horizontal LR bank that answers `bank_alone` no longer copies its whole tables.

Attack / validation (issue 15 item 2, "evaluation ... in memory proportional to a batch"): a coordinator whose
run has ``[bank_alone]`` asks a bank, after its one counted evaluation, for the local-only comparison. Issue 15's
T6 made `stats`, `fit` and `evaluate` read the party's rows per block (`ScaledRows`): their tracemalloc peak grows
by under 16 bytes per training row (`tests/test_horizontal_scale.py`). Expected: `bank_alone` (the same local
training and holdout scoring) stays within the same per-row bound. What happens: `compare_with`
(`sampan.horizontal.local_comparison`, lines 87-88) still runs ``standardize(imputed(X))`` on the whole train and
test matrices, so the bank holds a standardised float64 copy of its whole table plus the ``X - mean`` temporary:
about 2 x 8 bytes per feature per row (~64 bytes per row at 4 features, ~480 at 30), the 3-10x copies the issue
set out to remove, at every bank of a run that enables the comparison (a 10M-row, 30-feature bank: ~3.8 GB on
top of its table, past the 4 GB goal). Fixed: `compare_with` trains on the party's `ScaledRows` (filled and
standardised per minibatch chunk, as `fit`) and scores the holdout with `block_scores` (as `evaluate`), so the
histograms are those of the whole-matrix code and the peak grows by a few bytes per row.
"""

from __future__ import annotations

import tracemalloc

import numpy as np

from sampan.core.capability import PartySetup
from sampan.core.party import PartyApp
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.wire import Message

D = 4
MODEL = {"kind": "logistic", "n_features": D}
TRAIN = {"epochs": 1, "batch_size": 4096, "learning_rate": 0.1, "optimizer": "sgd", "momentum": 0.0, "l2": 0.0,
         "max_steps": None}


def _table(n: int, seed: int) -> PartyData:
    rng = np.random.default_rng(seed)
    X = rng.normal(3.0, 2.0, size=(n, D))
    return PartyData(party="bank", ids=np.array([f"r{i}" for i in range(n)], dtype=object), X=X,
                     y=(X[:, 0] + rng.normal(scale=2.0, size=n) > 3.0).astype(np.int8),
                     feature_names=[f"x{j}" for j in range(D)])


def _peak_per_bank_alone(n: int) -> int:
    setup = PartySetup("bank", (_table(n, 1), _table(n // 4, 2)), {"workflow": "horizontal", "bank_alone": True},
                       policy=PartyPrivacyPolicy(), options={})
    app: PartyApp = HORIZONTAL.party_app(setup)
    scaler = {"mean": np.full(D, 3.0), "scale": np.full(D, 2.0)}
    params = {"params": np.zeros(D + 1), **scaler}

    def ask(kind: str, **meta: object) -> Message:
        reply = app.handle(Message("run-1", 1, "coordinator", "bank", kind, arrays=params, meta=dict(meta)))
        assert not reply.is_error, reply.meta
        return reply

    ask("evaluate", model=MODEL)  # the run's counted evaluation (bank_alone needs it first)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        ask("bank_alone", model=MODEL, train=TRAIN, seed=3, bins=100)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_bank_alone_memory_grows_by_a_few_bytes_per_row() -> None:
    small, large = _peak_per_bank_alone(100_000), _peak_per_bank_alone(200_000)
    per_row = (large - small) / 100_000  # per training row (the holdout is a quarter of it)
    assert per_row < 16, f"bank_alone's peak grows by {per_row:.1f} bytes per training row"


def test_bank_alone_histograms_are_those_of_the_whole_matrix_code() -> None:
    """The per-block path gives the bytes of the former whole standardised copies (same training, same scores)."""
    from sampan.metrics import ScoreHistogram
    from sampan.models import model_from_config
    from sampan.models.local_training import checked_train_config, train

    train_table, test_table = _table(3000, 1), _table(1000, 2)
    setup = PartySetup("bank", (train_table, test_table), {"workflow": "horizontal", "bank_alone": True},
                       policy=PartyPrivacyPolicy(), options={})
    app: PartyApp = HORIZONTAL.party_app(setup)
    consortium = np.r_[0.1, np.linspace(-1.0, 1.0, D)]
    arrays = {"params": consortium, "mean": np.full(D, 3.0), "scale": np.full(D, 2.0)}
    for kind, meta in (("evaluate", {"model": MODEL}),
                       ("bank_alone", {"model": MODEL, "train": TRAIN, "seed": 3, "bins": 100})):
        reply = app.handle(Message("run-1", 1, "coordinator", "bank", kind, arrays=arrays, meta=meta))
        assert not reply.is_error, reply.meta
    model = model_from_config(MODEL)
    X_train = (train_table.X - arrays["mean"]) / arrays["scale"]
    X_test = (test_table.X - arrays["mean"]) / arrays["scale"]
    assert train_table.y is not None and test_table.y is not None
    local = train(model, model.init_params(np.random.default_rng(3)), X_train, train_table.y,
                  checked_train_config(TRAIN), np.random.default_rng(3)).params
    for name, params in (("local", local), ("consortium", consortium)):
        expected = ScoreHistogram.from_scores(test_table.y, model.predict_proba(params, X_test), 100).centred()
        for key, value in expected.to_arrays().items():
            assert reply.arrays[f"{name}.{key}"].tobytes() == np.asarray(value).tobytes(), (name, key)
