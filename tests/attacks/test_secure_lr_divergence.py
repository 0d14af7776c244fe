"""Finding 22 (review R10-A3): a wrapped validation sum must not become the "best" epoch.

On the reviewed code `train_secure_lr` refused only a score above 1 (`not brier <= 1.0`): a sum of squared
residuals that wrapped the ring decodes negative, passed, and became the best epoch, whose weights were then
restored and opened (checked by running this test there). Now any score outside [0, 1] stops training with a
clear error (above 1 is checked with shared weights, where partial logits are not clipped).
"""
from __future__ import annotations

import pytest
from _secure_lr_coordinator import session

from sampan.vertical import training as T
from sampan.vertical.session import Splits


def test_a_negative_validation_score_stops_training(monkeypatch: pytest.MonkeyPatch) -> None:
    s, _, _ = session(run_id="r10a3")
    sp = Splits.random(s.n_aligned or 0, seed=1)
    original = T._batch

    def wrapped(*args, **kw):  # type: ignore[no-untyped-def]
        out = original(*args, **kw)
        return out - 2.0 ** 31 if kw.get("validation") and out else out  # the opened sum wrapped the ring

    monkeypatch.setattr(T, "_batch", wrapped)
    with pytest.raises(ValueError, match="below 0, which a probability score cannot reach"):
        s.train(sp, T.VerticalLRConfig(epochs=2, batch_size=256, patience=2), seed=1)
