"""Review R13-VBASE-2 (commit 4554d2e): the repeated local baseline is keyed by a fingerprint of its weights and
scaler only, which the TRAINING rows fix; the test rows' features are not in it. `vertical.load_model` (a request
of the training workflow too) re-imputes the bank's table with the fill values an earlier part recorded
(`fill_record.refill`). When the refilled cells lie only in test rows (a rarely-missing column), the weights and
scaler are unchanged, so the same "model" is answered again, uncounted, over different test features: a
differencing of the test customers' labels no cap or charge covers."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from sampan.data import make_sme_consortium
from sampan.data.missing import MissingColumn
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical.model import LocalLinearPart, LocalScaler
from sampan.vertical.session import VerticalSession
from sampan.vertical.training import VerticalLRConfig


class _Registry:
    """The bank's registry holding parts of two earlier runs that recorded different fill values."""

    def __init__(self, parts: dict[str, SimpleNamespace]) -> None:
        self.parts = parts

    def models_for_run(self, run_id: str) -> list[Any]:
        return [self.parts[run_id]]


def test_repeated_baseline_cannot_see_other_test_features(monkeypatch: pytest.MonkeyPatch) -> None:
    import sampan.vertical.psi_party
    from sampan.privacy.randomness import seeded_generator

    monkeypatch.setattr(sampan.vertical.psi_party, "_secure_permutation", lambda n: seeded_generator(1).permutation(n))
    tables = {k: v for k, v in make_sme_consortium(3000, seed=9).vertical.items() if k in ("bank", "payments")}
    transport, parties = build_inprocess_vertical(tables)
    s = VerticalSession(transport, label_holder="bank", partners=["payments"], run_id="r13-vbase-2")
    s.connect()
    s.align()
    splits = s.splits(seed=1)
    bank = parties["bank"]
    d = bank.data.X.shape[1]
    # the bank's own table: column 0 misses a value in a few test customers only (the deployed `unfilled` view)
    rows = bank.psi.aligned_rows[splits.test[:5]]
    X = bank.data.X.copy()
    X[rows, 0] = np.nan
    bank.records.unfilled = dataclasses.replace(bank.data, X=X, missing_columns=(MissingColumn(0, "c0", "median"),))
    arrays, meta = LocalLinearPart("bank", list(bank.data.feature_names), LocalScaler(np.zeros(d), np.ones(d)),
                                   np.zeros(d)).to_arrays()
    fills = {"old-a": float(np.min(bank.data.X[:, 0])), "old-b": float(np.max(bank.data.X[:, 0]))}
    bank.records.registry = _Registry({run: SimpleNamespace(
        name="m:bank", arrays=arrays, version=1,
        meta={**meta, "label_holder": "bank", "fill_values": [v] + [None] * (d - 1)}) for run, v in fills.items()})
    answers = []
    for run in fills:  # the coordinator loads an earlier part, then asks for the bank's baseline again
        s.relay.wave(transport, [s.relay.request("bank", "vertical.load_model", {}, {"kind": "lr", "model_run": run})])
        answers.append(s.bank_only(splits, VerticalLRConfig(epochs=1)))
    assert len(bank.row_book._evaluated) == 1  # the second answer was the "same model", not counted
    assert answers[0] == answers[1]  # one fingerprint, one answer (else it must count as another evaluation)
