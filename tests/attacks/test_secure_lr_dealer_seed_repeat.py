"""Finding 7 (review R10-A4): a repeated dealer seed must not repeat a party's pad.

On the reviewed code the seen-set of dealer seeds was keyed on the channels' key material, so a second
`vertical.hello` (new channels) reset it; the dealer repeated the owner's seed with the training rows shifted by
one, the owner's seeded pad U repeated, and the bank as co-holder read E1 - E2 = X - X[shifted]: the delivery
partner's whole standardised training matrix (checked by running this attack there). Now every party mixes its
own fresh nonce into its dealer seed (the seed a stream uses is H(seed | party nonce)), the seen-set and the
instance cap are per run (not per channels), and a second `vertical.hello` within a run is refused.
"""
from __future__ import annotations

import numpy as np
import pytest
from _secure_lr_coordinator import session, setup

from sampan.crypto.ring import decode
from sampan.transport import PartyError
from sampan.vertical.session import Splits


def _recovered(E1: np.ndarray, E2: np.ndarray, X_true: np.ndarray) -> bool:
    D = decode(E1 - E2, 16)
    X_hat = np.vstack([np.zeros(D.shape[1]), -np.cumsum(D[:-1], axis=0)])
    X_hat -= X_hat.mean(axis=0)
    return bool(np.abs(X_hat - X_true).max() < 0.1)


def test_a_second_hello_in_a_run_is_refused() -> None:
    s, transport, parties = session(run_id="r10a4")
    sp = Splits.random(s.n_aligned or 0, seed=1)
    inst = setup(s, transport, sp.train, sp.val)
    with pytest.raises(PartyError, match="refusing a second vertical.hello in run 'r10a4'"):
        s.connect()
    with pytest.raises(PartyError, match="reuses an earlier instance nonce or dealer seed"):
        setup(s, transport, np.roll(sp.train, -1), sp.val, seeds=inst["dealer"].seeds)


def test_a_repeated_dealer_seed_gives_fresh_pads() -> None:
    """The same seeds in another run on the same parties (new channels, a fresh seen-set): accepted, but the
    pads differ, so E1 - E2 is noise, not X - X[shifted]."""
    s, transport, parties = session(run_id="r10a4-first")
    sp = Splits.random(s.n_aligned or 0, seed=1)
    inst = setup(s, transport, sp.train, sp.val)
    E1 = parties["bank"].lr.state.E["delivery"].copy()
    first = parties["delivery"].psi.aligned_rows.copy()  # the test's view: which customer each position is
    s2, _, _ = session(run_id="r10a4-second", built=(transport, parties))
    position = {int(row): k for k, row in enumerate(parties["delivery"].psi.aligned_rows)}
    same = lambda rows: np.array([position[int(first[r])] for r in rows])  # noqa: E731 (run 1 customers, run 2)
    setup(s2, transport, same(np.roll(sp.train, -1)), same(sp.val), seeds=inst["dealer"].seeds)
    E2 = parties["bank"].lr.state.E["delivery"]
    X_true = parties["delivery"].lr.scaler.transform(parties["delivery"].data.X[first[sp.train]])
    assert not _recovered(E1, E2, X_true), "the bank recovered the partner's features"
