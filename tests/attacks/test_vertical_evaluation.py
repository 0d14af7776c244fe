"""Review R9 (A3): the coordinator read the bank's labels through "held-out evaluation".

`session.evaluate(rows)` (and GBDT's `vgb.score_start`, and `vertical.local_baseline`'s test_rows) scored
whatever aligned positions the coordinator chose: a one-row evaluation failed with the one-class ROC AUC
error text carried back to the coordinator (40/40 labels read), and rows [i, pos, neg] gave y_i through
default_rate. Now the bank evaluates only the run's test rows: the first evaluation request fixes them
(at least MIN_EVALUATION_ROWS distinct rows, none a training or validation row, later setups may
not train on them), later requests must name exactly those rows, each model is evaluated once, fewer than
MIN_EVALUATION_PER_CLASS rows of a class is refused generically, and metric errors stay at the bank.
The first test fails on commit 1064fb2 (it was the xfail(strict) reproduction before the fix).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sampan.core.transport import PartyError
from sampan.data import make_sme_consortium
from sampan.models.gbdt import GBDTParams
from sampan.runtime.federation import build_inprocess_vertical
from sampan.vertical.gbdt import score_vertical_gbdt, train_vertical_gbdt
from sampan.vertical.model import LocalLinearPart, LocalScaler
from sampan.vertical.rows import MIN_EVALUATION_PER_CLASS
from sampan.vertical.session import Splits, VerticalSession
from sampan.vertical.training import VerticalLRConfig
from sampan.vertical.woe import federated_woe


def _session(run_id: str, n: int = 1500) -> tuple[VerticalSession, Any, dict[str, Any]]:
    tables = {k: v for k, v in make_sme_consortium(n, seed=9).vertical.items() if k in ("bank", "payments")}
    transport, parties = build_inprocess_vertical(tables)
    s = VerticalSession(transport, label_holder="bank", partners=["payments"], run_id=run_id)
    s.connect()
    s.align()
    for name, p in parties.items():  # any model part will do: the leak does not depend on the model
        d = p.data.X.shape[1]
        p.loaded_part = LocalLinearPart(name, list(p.data.feature_names), LocalScaler(np.zeros(d), np.ones(d)),
                                        np.zeros(d))
    return s, transport, parties


def _no_label_word(exc: BaseException) -> None:
    text = str(exc)
    assert "labels found" not in text and "positive" not in text and "negative" not in text, text


def test_coordinator_cannot_read_a_label_through_held_out_evaluation() -> None:
    s, _, parties = _session("r9-a3")
    y = parties["bank"]._aligned_y()
    pos, neg = int(np.nonzero(y == 1)[0][0]), int(np.nonzero(y == 0)[0][0])
    with pytest.raises(Exception) as single:
        s.evaluate(np.array([pos]))
    _no_label_word(single.value)
    other = next(i for i in range(len(y)) if i not in (pos, neg))  # row 2 was pos or neg by chance at times
    with pytest.raises(PartyError, match="refusing held-out evaluation"):  # the bank's documented row-rule refusal
        s.evaluate(np.array([other, pos, neg]))


def test_only_the_fixed_test_rows_are_evaluated_each_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import sampan.vertical.psi_party
    from sampan.privacy.randomness import seeded_generator

    # One seeded alignment order: the bank evaluates only test rows holding both classes (5% default rate:
    # a CSPRNG order leaves ~110 test rows without a default about once in 400 runs).
    monkeypatch.setattr(sampan.vertical.psi_party, "_secure_permutation", lambda n: seeded_generator(1).permutation(n))
    s, transport, parties = _session("r9-a3-fixed", n=3000)
    splits = s.splits(seed=1)
    y = parties["bank"]._aligned_y()
    assert min(np.bincount(y[splits.test].astype(int))) >= MIN_EVALUATION_PER_CLASS
    metrics = s.evaluate(splits.test)
    assert metrics["n"] == len(splits.test)
    with pytest.raises(Exception, match="second held-out evaluation"):  # the same model again
        s.evaluate(splits.test)
    with pytest.raises(Exception, match="other rows than the test rows"):  # one row more (a difference attack)
        s.evaluate(np.append(splits.test, splits.val[:1]))
    with pytest.raises(Exception, match="other rows than the test rows"):
        s.evaluate(splits.val)
    first = s.bank_only(splits, VerticalLRConfig(epochs=1))
    assert first["n"] == len(splits.test)
    # the same baseline again (weights and scaler fix every score: a seeded re-run) gives the same numbers, so it
    # is answered and tells nothing new; another baseline is another evaluated model, under the same row rules
    again = s.bank_only(splits, VerticalLRConfig(epochs=1))
    assert {k: again[k] for k in ("auc", "ks", "brier", "n")} == {k: first[k] for k in ("auc", "ks", "brier", "n")}
    with pytest.raises(Exception, match="test rows"):  # no training on the test rows afterwards
        federated_woe(transport, s.run_id, "bank", ["payments"], np.append(splits.train, splits.test[:1]))


def test_training_rows_and_small_or_one_class_sets_are_refused_without_label_information() -> None:
    s, _, _ = _session("r9-a3-train")
    splits = s.splits(seed=1)
    # local baseline: test = training rows (not the bank's own test customers, R13-VSPLIT-1)
    with pytest.raises(Exception, match="refusing held-out evaluation of other rows"):
        s.bank_only(Splits(splits.train, splits.val, splits.train[:200]), VerticalLRConfig(epochs=1))
    s, _, parties = _session("r9-a3-one-class")
    y = parties["bank"]._aligned_y()
    splits = s.splits(seed=1)
    negatives = np.nonzero(y == 0)[0]
    with pytest.raises(Exception) as one_class:  # 200 negatives (one class): refused, with no class named
        s.evaluate(negatives[:200])
    _no_label_word(one_class.value)
    assert s.evaluate(splits.test)["n"] == len(splits.test)  # only the bank's own test customers are evaluated


def test_gbdt_held_out_evaluation_follows_the_same_rules() -> None:
    s, transport, parties = _session("r9-a3-gbdt", n=3000)
    splits = s.splits(seed=1)
    train_vertical_gbdt(transport, s.run_id, "bank", ["payments"], splits.train, splits.val,
                        GBDTParams(n_trees=1, max_depth=1, n_bins=8))
    y = parties["bank"]._aligned_y()
    pos = int(np.nonzero(y[splits.test] == 1)[0][0])
    with pytest.raises(Exception) as single:
        score_vertical_gbdt(transport, s.relay, "bank", ["payments"], "one", aligned=splits.test[[pos]])
    _no_label_word(single.value)
    with pytest.raises(Exception, match="refusing held-out evaluation of other rows"):
        score_vertical_gbdt(transport, s.relay, "bank", ["payments"], "train", aligned=splits.train[:200])
    metrics = score_vertical_gbdt(transport, s.relay, "bank", ["payments"], "test", aligned=splits.test).meta
    assert metrics["n"] == len(splits.test)
    with pytest.raises(Exception, match="second held-out evaluation"):
        score_vertical_gbdt(transport, s.relay, "bank", ["payments"], "again", aligned=splits.test)


def test_gbdt_refuses_a_validation_set_too_small_for_the_per_tree_loss_the_coordinator_sees() -> None:
    s, transport, parties = _session("r9-a3-gbdt-val")
    splits = s.splits(seed=1)
    with pytest.raises(Exception, match="validation rows"):
        train_vertical_gbdt(transport, s.run_id, "bank", ["payments"], splits.train, splits.val[:1],
                            GBDTParams(n_trees=1, max_depth=1, n_bins=8))
