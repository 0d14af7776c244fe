"""The ROC/calibration band counts (`sampan.metrics.score_bands`, meta "curves" of a held-out evaluation) ride the
held-out rules: a curious coordinator cannot use them to read a label.

Attempts: a tiny evaluation whose bands would pin a row's label (refused before anything leaves), a difference
attack (the fixed test rows plus one row: the band that changes would give that row's label and PD band), a
second release of the same model. What it does get: per fixed PD band, defaults, non-defaults and summed PD over
the >= 50 fixed test rows, once per model; the band edges are public constants, not data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sampan.core.transport import PartyError
from sampan.data import make_sme_consortium
from sampan.metrics.score_bands import BAND_LOGITS
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical.model import LocalLinearPart, LocalScaler
from sampan.vertical.rows import MIN_EVALUATION_PER_CLASS
from sampan.vertical.session import VerticalSession


def _session(monkeypatch: pytest.MonkeyPatch) -> tuple[VerticalSession, dict[str, Any]]:
    import sampan.vertical.psi_party
    from sampan.privacy.randomness import seeded_generator

    # a seeded alignment order, so the fixed test rows hold both classes (5% default rate)
    monkeypatch.setattr(sampan.vertical.psi_party, "_secure_permutation", lambda n: seeded_generator(1).permutation(n))
    tables = {k: v for k, v in make_sme_consortium(3000, seed=9).vertical.items() if k in ("bank", "payments")}
    transport, parties = build_inprocess_vertical(tables)
    s = VerticalSession(transport, label_holder="bank", partners=["payments"], run_id="curves")
    s.connect()
    s.align()
    rng = np.random.default_rng(0)
    for name, p in parties.items():  # any model: the attack does not depend on it
        d = p.data.X.shape[1]
        p.loaded_part = LocalLinearPart(name, list(p.data.feature_names), LocalScaler(np.zeros(d), np.ones(d)),
                                        rng.normal(0, 0.1, d))
    return s, parties


def test_band_counts_leave_only_for_the_fixed_test_rows_once(monkeypatch: pytest.MonkeyPatch) -> None:
    s, parties = _session(monkeypatch)
    y = parties["bank"]._aligned_y()
    pos, neg = int(np.nonzero(y == 1)[0][0]), int(np.nonzero(y == 0)[0][0])
    with pytest.raises(PartyError, match="refusing held-out evaluation") as tiny:  # bands of 3 rows: refused
        s.evaluate(np.array([2, pos, neg]))
    assert "curves" not in str(tiny.value) and "pos" not in str(tiny.value)
    splits = s.splits(seed=1)
    assert min(np.bincount(y[splits.test].astype(int))) >= MIN_EVALUATION_PER_CLASS
    metrics = s.evaluate(splits.test)
    bands = metrics["curves"]
    assert set(bands) == {"pos", "neg", "sum_pd"} and len(bands["pos"]) == len(BAND_LOGITS) + 1  # public edges
    assert sum(bands["pos"]) + sum(bands["neg"]) == len(splits.test) >= 50
    assert sum(bands["pos"]) == pytest.approx(float(y[splits.test].sum()))  # what AUC's inputs already say
    with pytest.raises(PartyError, match="other rows than the test rows"):  # difference attack: one row more
        s.evaluate(np.append(splits.test, splits.val[:1]))
    with pytest.raises(PartyError, match="second held-out evaluation"):  # the same model's bands again
        s.evaluate(splits.test)
