"""Finding 7: two secure-LR trainings on the same channels must not share a pairwise PRG stream.

A feature holder other than the helper splits its partial logit Z as (Z - rho) to the helper and rho to
the bank, with rho drawn from its pairwise PRG with the bank. On commit 1064fb2 the label was `z/{t}`
for every training, so when the run trained twice (the LR, then the scorecard's LR, on the same
channels and the same batch schedule) the helper subtracted the two envelopes of batch t and read
Z_1 - Z_2 row by row: the partner's partial-logit differences (checked by running this attack on
1064fb2; see the report). Now every training is a protocol instance with its own nonce in every PRG
label and its own dealer seeds, and a party refuses a nonce or a seed it has seen in this run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sampan.crypto import dealer as dealer_module
from sampan.crypto.ring import encode, to_signed
from sampan.data import make_sme_consortium
from sampan.runtime.federation import build_inprocess_vertical
from sampan.transport import PartyError
from sampan.vertical import training
from sampan.vertical.party import VerticalParty
from sampan.vertical.secure_lr import POLY
from sampan.vertical.session import Splits, VerticalSession
from sampan.vertical.training import VerticalLRConfig


def _session() -> tuple[VerticalSession, dict[str, VerticalParty]]:
    transport, parties = build_inprocess_vertical(make_sme_consortium(3000, seed=11).vertical)
    session = VerticalSession(transport, label_holder="bank", partners=["payments", "delivery"], run_id="prg")
    session.connect()
    session.align()
    return session, parties


class HelperTap:
    """The helper (payments) keeps every envelope the other feature holder (delivery) sends it; the test also
    notes the partial logit delivery really sealed (god view, to check what the helper computes)."""

    def __init__(self, parties: dict[str, VerticalParty]) -> None:
        self.training = 0
        self.masked: dict[tuple[int, int], np.ndarray] = {}
        self.true_z: dict[tuple[int, int], np.ndarray] = {}
        helper, partner = parties["payments"], parties["delivery"]
        opened = helper.channels.open_arrays  # type: ignore[union-attr]

        def open_arrays(sender: str, envelope: np.ndarray) -> dict[str, np.ndarray]:
            arrays = opened(sender, envelope)
            st = helper.lr.state
            if sender == "delivery" and "z" in arrays and st is not None and not st.val:
                self.masked[(self.training, st.t)] = arrays["z"]
            return arrays

        sealed = partner.channels.seal_arrays  # type: ignore[union-attr]

        def seal_arrays(recipient: str, arrays: Any) -> np.ndarray:
            st = partner.lr.state
            if recipient == "payments" and "z" in arrays and st is not None and not st.val:
                z = st.X[st.rows] @ st.weights
                self.true_z[(self.training, st.t)] = encode(np.clip(z, -st.logit_clip, st.logit_clip), POLY.in_bits)
            return sealed(recipient, arrays)

        helper.channels.open_arrays = open_arrays  # type: ignore[method-assign, union-attr]
        partner.channels.seal_arrays = seal_arrays  # type: ignore[method-assign, union-attr]


def test_two_trainings_in_one_run_use_independent_prg_streams() -> None:
    session, parties = _session()
    tap = HelperTap(parties)
    splits = Splits.random(session.n_aligned or 0, seed=1)
    for k, rate in enumerate((0.3, 0.05)):  # the run's LR, then a second model on the same channels
        tap.training = k
        session.train(
            splits,
            VerticalLRConfig(shared_weights=False, epochs=1, batch_size=64, learning_rate=rate, patience=1),
            seed=4,
        )
    common = sorted(t for (k, t) in tap.masked if k == 0 and (1, t) in tap.masked and t > 0)
    assert len(common) >= 3
    for t in common:
        truth = to_signed(tap.true_z[(0, t)] - tap.true_z[(1, t)])
        assert np.any(truth != 0)  # the two models' partial logits differ on these rows
        # The helper's attack: subtract the envelopes of batch t of the two trainings.
        guess = to_signed(tap.masked[(0, t)] - tap.masked[(1, t)])
        assert np.mean(guess == truth) < 0.01  # 1064fb2: every row equal (the same rho cancelled)
        assert np.mean(np.abs(guess.astype(np.float64)) < 2**40) < 0.01  # uniform, not a small difference


def test_a_replayed_instance_nonce_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    session, _ = _session()
    splits = Splits.random(session.n_aligned or 0, seed=1)
    monkeypatch.setattr(training.secrets, "token_hex", lambda n=16: "ab" * n)  # a coordinator that repeats itself
    session.train(splits, VerticalLRConfig(shared_weights=False, epochs=1, batch_size=128, patience=1), seed=4)
    with pytest.raises(PartyError, match="reuses an earlier instance nonce or dealer seed"):
        session.train(splits, VerticalLRConfig(shared_weights=False, epochs=1, batch_size=128, patience=1), seed=4)


def test_a_replayed_dealer_seed_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    session, _ = _session()
    splits = Splits.random(session.n_aligned or 0, seed=1)
    monkeypatch.setattr(dealer_module.os, "urandom", lambda n: b"\x07" * n)  # a dealer that deals the same masks
    session.train(splits, VerticalLRConfig(shared_weights=False, epochs=1, batch_size=128, patience=1), seed=4)
    with pytest.raises(PartyError, match="reuses an earlier instance nonce or dealer seed"):
        session.train(splits, VerticalLRConfig(shared_weights=False, epochs=1, batch_size=128, patience=1), seed=4)


def test_a_reconnect_within_a_run_is_refused_with_a_clear_error() -> None:
    """Run keys are made once per run (review R10-A4: a second hello used to reset what parties remembered per
    channels); the run's second training still works on its first channels."""
    session, _ = _session()
    splits = Splits.random(session.n_aligned or 0, seed=1)
    session.train(splits, VerticalLRConfig(shared_weights=False, epochs=1, batch_size=128, patience=1), seed=4)
    with pytest.raises(PartyError, match="refusing a second vertical.hello in run 'prg'"):
        session.connect()
    session.train(splits, VerticalLRConfig(shared_weights=False, epochs=1, batch_size=128, patience=1), seed=5)


def test_a_repeated_batch_index_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Within one instance the labels are vlr/<instance>/z/<t>: a coordinator replaying t would repeat rho."""
    session, _ = _session()
    splits = Splits.random(session.n_aligned or 0, seed=1)
    original = training._batch

    def replaying(*args, **kwargs):  # type: ignore[no-untyped-def]
        args = list(args)
        args[5] = 0  # every training batch claims index 0
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "_batch", replaying)
    with pytest.raises(PartyError, match="refusing batch index 0"):
        session.train(splits, VerticalLRConfig(shared_weights=False, epochs=1, batch_size=64, patience=1), seed=4)
