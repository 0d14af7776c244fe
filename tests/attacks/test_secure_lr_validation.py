"""Findings 4/22 (review R6-A): the coordinator must not read labels through the validation score.

The coordinator sees one aggregate per epoch: the validation sum of squared residuals. Before this fix it
chose the validation rows (unchecked: they could be training rows) and the validation batches, and told the
holders which batch was the "last": one-row batches each flagged last opened r_k^2 row by row, and before any
training r_k^2 is (p0 - y_k)^2, so every label was read (200 of 200 in the review's script). Now the residual
holders own validation: they refuse validation rows that overlap the training rows or number fewer than one
batch, apply the training batches' partition rule to validation batches, open the score only when every
validation row has been used exactly once, and only once per complete training epoch (none before the first).
Each test performs the coordinator's attack through the project's classes; on the reviewed code every one of
them opened per-row scores (checked by running them there).
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
import pytest
from test_secure_lr_labels import _session

from sampan.crypto.dealer import Dealer
from sampan.data import make_sme_consortium
from sampan.transport import PartyError
from sampan.vertical import training as T
from sampan.vertical.session import Splits


class _LastEveryBatch(T.Relay):
    """A coordinator that flags every validation batch as the pass's last (the reviewed code obeyed it)."""

    def request(self, party: str, kind: str, arrays: dict[str, np.ndarray] | None = None,
                meta: dict | None = None) -> Any:
        if kind == "vlr.square":
            meta = {**(meta or {}), "last": True}
        return super().request(party, kind, arrays, meta)


def _setup(val_rows: np.ndarray, train_rows: np.ndarray) -> tuple[Any, _LastEveryBatch, Dealer, Any]:
    """A coordinator-driven secure-LR setup with validation rows of its choosing."""
    session, parties = _setup.session  # type: ignore[attr-defined]
    roles, relay, dealer = session.roles, _LastEveryBatch("r6a"), Dealer(list(session.roles.all))
    base = {"bank": roles.bank, "helper": roles.helper, "others": list(roles.others), "lr": 0.2, "l2": 1e-4,
            "logit_clip": T.VerticalLRConfig().clip_for(3), "instance": secrets.token_hex(16)}
    setup = relay.wave(session.transport, (relay.request(p, "vlr.setup", {
        "train_rows": train_rows, "val_rows": val_rows,
        "dealer_seed": np.frombuffer(dealer.seeds[p], dtype=np.uint8)}, base) for p in roles.all))
    columns = T.bind_dealer(dealer, setup)
    for p in roles.all:
        for q in roles.holders_for(p):
            dealer.mask_matrix(p, q, len(train_rows), columns[p])
    relay.wave(session.transport, (relay.request(p, "vlr.masked_features") for p in roles.all))
    return session, relay, dealer, parties


@pytest.fixture(autouse=True)
def _consortium() -> None:  # per test: each party joins at most 2 secure-LR instances per run
    _setup.session = _session(make_sme_consortium(3000, seed=11).vertical)  # type: ignore[attr-defined]


def _per_row_openings(session: Any, relay: T.Relay, dealer: Dealer, n: int, size: int = 1) -> list[float]:
    return [T._batch(session.transport, relay, dealer, session.roles, np.arange(k, k + size), 1000 + k,
                     validation=True) for k in range(0, n, size)]


def test_validation_rows_that_are_training_rows_are_refused() -> None:
    session, _ = _setup.session  # type: ignore[attr-defined]
    sp = Splits.random(session.n_aligned or 0, seed=1)
    with pytest.raises(PartyError, match="refusing validation rows that are also training rows"):
        s, relay, dealer, _ = _setup(sp.train[:200], sp.train)
        _per_row_openings(s, relay, dealer, 200)


def test_the_coordinator_cannot_read_labels_through_one_row_validation_openings() -> None:
    """Disjoint validation rows, one-row batches flagged 'last': refused (a validation batch follows the
    training batches' size rule, and nothing opens before the first training epoch)."""
    session, parties = _setup.session  # type: ignore[attr-defined]
    sp = Splits.random(session.n_aligned or 0, seed=1)
    s, relay, dealer, _ = _setup(sp.val, sp.train)
    with pytest.raises(PartyError, match=r"party '(bank|payments)': refusing a validation"):
        _per_row_openings(s, relay, dealer, 200)


def test_no_score_opens_before_a_training_epoch_or_twice_per_epoch() -> None:
    """Full-size validation batches: still refused before the first epoch, and a second pass after one epoch."""
    session, _ = _setup.session  # type: ignore[attr-defined]
    sp = Splits.random(session.n_aligned or 0, seed=1)
    s, relay, dealer, _ = _setup(sp.val, sp.train)
    with pytest.raises(PartyError, match="does not follow a complete training epoch"):
        _per_row_openings(s, relay, dealer, len(sp.val), size=len(sp.val))
    # an honest training: one opening per epoch, then a repeated pass in the same epoch is refused
    result = session.train(sp, T.VerticalLRConfig(epochs=2, batch_size=256, patience=5), seed=2)
    assert len(result.val_brier) == 2 and all(0 < b < 0.5 for b in result.val_brier)


def test_a_validation_pass_is_opened_once_per_epoch_not_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The coordinator runs the validation pass twice after one epoch: the second pass is refused."""
    session, _ = _setup.session  # type: ignore[attr-defined]
    sp = Splits.random(session.n_aligned or 0, seed=1)
    original = T.epoch_batches
    calls = {"n": 0}

    def twice(order: np.ndarray, batch_size: int, min_rows: int) -> list[np.ndarray]:
        calls["n"] += 1
        batches = original(order, batch_size, min_rows)
        return batches * 2 if calls["n"] == 1 else batches  # the first call builds the validation batches

    monkeypatch.setattr(T, "epoch_batches", twice)
    with pytest.raises(PartyError, match="does not follow a complete training epoch"):
        session.train(sp, T.VerticalLRConfig(epochs=1, batch_size=128, patience=5), seed=3)
