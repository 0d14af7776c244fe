"""R15-VLR-1 (fixed): a party holding its features as float32 gets the float64 scaler and range check.

Attack / validation: a model validator trains the same secure vertical LR twice on the same values, once held
as float64 and once as float32 (the issue-15 compact form; every value here is exactly representable). The
standardisation statistics must be the same up to float32 rounding of the data (~1e-7 relative), so the model
is the same. What happens: `secure_lr_encode.column_moments` sums each block of a float32 table in float32
accumulators (`block.sum(axis=0)`, then `np.square(X - mean).sum`), so a column whose mean is large beside its
spread (a credit limit of 10,000 +- 1, a year, a balance) gets a mean off by ~2.4 standard deviations and a
scale 2.6x too large at 63,000 rows; the features are silently shifted and compressed before int32 encoding,
and the model (and its saved scaler) differ from the float64 run. `LocalScaler.fit` (the old path) casts to
float64 first.
Fixed: `column_moments` widens each block to float64 before summing (both passes), so the scaler and the
block range check match the float64 run.
"""

from __future__ import annotations

import numpy as np

from sampan.data.table import PartyData
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical.model import LocalScaler
from sampan.vertical.session import Splits, VerticalSession
from sampan.vertical.training import VerticalLRConfig


def _train(dtype: type) -> tuple[LocalScaler, np.ndarray]:
    n = 70_000
    rng = np.random.default_rng(0)
    Xb = np.column_stack([10_000 + rng.standard_normal(n), rng.standard_normal(n)]).astype(np.float32)
    Xp = rng.standard_normal((n, 2)).astype(np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-(Xb[:, 0].astype(np.float64) - 10_000)))).astype(np.int8)
    ids = np.array([f"c{i}" for i in range(n)], dtype=object)
    tables = {"bank": PartyData("bank", ids, Xb.astype(dtype), y, ["limit", "b1"]),
              "partner": PartyData("partner", ids, Xp.astype(dtype), None, ["p0", "p1"])}
    transport, parties = build_inprocess_vertical(tables)
    for p in parties.values():
        p.psi.aligned_rows = np.arange(n)
    session = VerticalSession(transport, label_holder="bank", partners=["partner"])
    session.connect()
    session.n_aligned = n
    train = np.arange(7_000, n)
    session.train(Splits(train, np.arange(7_000), np.arange(0)),
                  VerticalLRConfig(epochs=1, batch_size=8192, patience=1), seed=1)
    return parties["bank"].lr.part.scaler, Xb[train].astype(np.float64)


def test_float32_table_gets_the_float64_scaler() -> None:
    scaler32, X = _train(np.float32)
    ref = LocalScaler.fit(X)
    shift = (np.asarray(scaler32.mean, dtype=np.float64) - ref.mean) / ref.scale
    assert np.abs(shift).max() < 1e-3, f"scaler mean off by {shift} standard deviations"
    np.testing.assert_allclose(np.asarray(scaler32.scale, dtype=np.float64), ref.scale, rtol=1e-3)


def test_float32_table_passes_the_range_check_float64_passes() -> None:
    """The same root cause in `check_feature_range(..., rows=...)`: a float32 column of spread ~1e19 (its squares
    overflow float32, not float64) is refused as "too large to standardise in float64", while the same values as
    float64, or the whole-table path on the float32 array, pass."""
    from sampan.vertical.secure_lr_range import check_feature_range

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.standard_normal(1000) * 1e19, rng.standard_normal(1000)]).astype(np.float32)
    check_feature_range("partner", ["big", "a"], X.astype(np.float64), clip=8.0, frac_bits=16, rows=np.arange(1000))
    check_feature_range("partner", ["big", "a"], X, clip=8.0, frac_bits=16)
    check_feature_range("partner", ["big", "a"], X, clip=8.0, frac_bits=16, rows=np.arange(1000))
