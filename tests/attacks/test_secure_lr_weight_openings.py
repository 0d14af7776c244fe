"""Findings 4/7 (review R10-A1): a partner must not read labels from weights opened early, instance after instance.

On the reviewed code the coordinator could ask for `vlr.wopen` after ONE training batch, and start as many
secure-LR instances as it liked: the partner's opened weights were then -lr g / n, its plaintext gradient of
that batch, and nine instances whose first batches differed by one row gave 8 of 8 targeted labels (checked by
running this attack there). Now the co-holders open only weights checkpointed at an epoch boundary (at least one
complete training epoch, no update pending), and each party caps the secure-LR instances it joins per run (LR and
scorecard: 2 by default), whatever the channels.
"""
from __future__ import annotations

import numpy as np
import pytest
from _secure_lr_coordinator import LR, apply_pending, open_and_finish, session, setup, train_batch

from sampan.transport import PartyError
from sampan.vertical.session import Splits


def test_a_partner_cannot_read_labels_from_early_weight_openings_across_instances() -> None:
    s, transport, parties = session(run_id="r10a1")
    sp = Splits.random(s.n_aligned or 0, seed=1)
    y = parties["bank"].data.y[parties["bank"].psi.aligned_rows][sp.train]

    def gradient(batch: np.ndarray) -> np.ndarray:
        inst = setup(s, transport, sp.train, sp.val, lr=LR)
        train_batch(transport, inst, batch)
        apply_pending(transport, inst)
        open_and_finish(transport, inst)  # the coordinator opens after ONE batch
        return -parties["delivery"].lr.part.weights * len(batch) / LR

    B = np.arange(64)
    with pytest.raises(PartyError, match="refusing to open the shared weights before a complete training epoch"):
        g0 = gradient(B)
    # the reviewed attack: every further instance is refused too (here: at the instance cap), so no label is read
    X = parties["delivery"].lr.scaler.transform(parties["delivery"]._aligned_X()[sp.train])
    targets = [int(j) for j in np.flatnonzero(y[64:] == 1)[:3] + 64] + [64, 65, 66]
    read = 0
    for j in targets:
        Bj = B.copy()
        Bj[0] = j
        try:
            gj = gradient(Bj)
        except PartyError:
            continue
        (a_j, _), *_ = np.linalg.lstsq(np.stack([X[j], -X[B[0]]], axis=1), gj - g0, rcond=None)
        read += int(int(a_j < 0) == y[j])
    assert read == 0


def test_weights_checkpointed_mid_epoch_are_not_opened() -> None:
    """The coordinator checkpoints after one batch (update applied) and asks to open: refused at the checkpoint."""
    s, transport, _ = session(run_id="r10a1-ckpt")
    sp = Splits.random(s.n_aligned or 0, seed=1)
    inst = setup(s, transport, sp.train, sp.val)
    train_batch(transport, inst, np.arange(64))
    apply_pending(transport, inst)
    relay = inst["relay"]
    with pytest.raises(PartyError, match="refusing to checkpoint the shared weights before a complete training epoch"):
        relay.wave(transport, (relay.request(p, "vlr.checkpoint") for p in inst["roles"].all))


def test_each_party_caps_secure_lr_instances_per_run() -> None:
    """Two instances (the LR and the scorecard's LR) per run by default; a third is refused with fresh seeds and
    nonces, and the record is per run, not per channels."""
    s, transport, _ = session(run_id="r10a1-cap")
    sp = Splits.random(s.n_aligned or 0, seed=1)
    setup(s, transport, sp.train, sp.val)
    setup(s, transport, sp.train, sp.val)
    with pytest.raises(PartyError, match="allows 2 per run"):
        setup(s, transport, sp.train, sp.val)
