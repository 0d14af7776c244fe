"""Numerical safety of secure vertical LR: overflowing columns named before training, impossible metrics stop it."""

from __future__ import annotations

import numpy as np
import pytest

from sampan.data import make_sme_consortium
from sampan.errors import DataError, ProtocolError
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical import training as T
from sampan.vertical.secure_lr_range import (
    MetricRangeError,
    check_feature_range,
    check_fixed_point,
    check_metric,
    check_metrics,
)
from sampan.vertical.session import Splits, VerticalSession


def test_columns_that_cannot_be_encoded_are_named_with_a_remedy() -> None:
    X = np.ones((50, 3))
    X[:, 1] = np.linspace(0, 1, 50)
    X[7, 0] = np.nan
    X[:, 2] = np.linspace(-1e200, 1e200, 50)  # std overflows float64
    with pytest.raises(DataError) as info:
        check_feature_range("payments", ["late_fees", "volume", "gmv_cents"], X, clip=8.0, frac_bits=16)
    text = str(info.value)
    assert "party 'payments'" in text and "'late_fees'" in text and "'gmv_cents'" in text and "'volume'" not in text
    assert "missing-value policy" in text and "rescale" in text
    check_feature_range("payments", ["a", "b", "c"], np.random.default_rng(0).normal(size=(50, 3)), clip=8.0,
                        frac_bits=16)


@pytest.mark.parametrize(("name", "value"), [("brier", 178.0), ("brier", 1219364.0), ("auc", 1.2), ("ks", -0.1),
                                             ("val_logloss", float("nan")), ("train_logloss", float("inf")),
                                             ("brier", -0.5)])
def test_a_metric_outside_its_range_stops_the_run(name: str, value: float) -> None:
    with pytest.raises(MetricRangeError, match=rf"vertical LR: {name} = .* outside its possible range"):
        check_metrics("vertical LR", {name: value})


def test_a_batch_whose_gradient_sum_leaves_the_ring_is_refused_before_training() -> None:
    check_fixed_point(4096, clip=8.0, feature_bits=16, residual_bits=16)
    with pytest.raises(ProtocolError, match=r"batch_size 200000000 .* use a batch_size of at most \d+"):
        check_fixed_point(200_000_000, clip=8.0, feature_bits=16, residual_bits=16)


def test_metrics_in_range_pass() -> None:
    check_metrics("m", {"auc": 0.8, "ks": 0.4, "brier": 0.07, "val_logloss": 0.3, "n": 1000, "missing_rate": {}})
    check_metric("m", "auc", None)


def _session(tables: dict[str, object]) -> tuple[VerticalSession, Splits]:
    transport, _ = build_inprocess_vertical(tables)  # type: ignore[arg-type]
    s = VerticalSession(transport, label_holder="bank", partners=[p for p in tables if p != "bank"], run_id="range")
    s.connect()
    s.align()
    return s, Splits.random(s.n_aligned or 0, seed=1)


def test_secure_lr_refuses_to_start_on_an_overflowing_partner_column() -> None:
    tables = dict(make_sme_consortium(3000, seed=11).vertical)
    payments = tables["payments"]
    payments.X[::10, 1] = np.inf  # type: ignore[attr-defined]
    s, sp = _session(tables)
    with pytest.raises(Exception, match=r"payments.*secure LR cannot start.*non-finite") as info:
        s.train(sp, T.VerticalLRConfig(epochs=1, batch_size=256), seed=1)
    assert repr(payments.feature_names[1]) in str(info.value)  # type: ignore[attr-defined]


def test_a_validation_brier_of_178_stops_plaintext_gradient_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clipped plaintext-gradient mode used to accept any score above 1 (the run printed Brier 178)."""
    s, sp = _session(dict(make_sme_consortium(3000, seed=11).vertical))
    original = T._batch

    def diverged(*args, **kw):  # type: ignore[no-untyped-def]
        out = original(*args, **kw)
        return 178.0 * 400 if kw.get("validation") and out else out

    monkeypatch.setattr(T, "_batch", diverged)
    config = T.VerticalLRConfig(epochs=1, batch_size=256, shared_weights=False, allow_gradient_label_leakage=True)
    with pytest.raises(ValueError, match="above 1, which a probability score cannot reach"):
        s.train(sp, config, seed=1)
