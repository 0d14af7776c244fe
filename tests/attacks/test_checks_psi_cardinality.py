"""Attack on the id-overlap check: the party that computes the count (the label holder) tries to tell which of its
ids are in the intersection with the partner, from everything it sees in PSI cardinality mode.

Claim (`sampan.vertical.psi`, MODE_REVEALS["cardinality"], used by `sampan.checks.workflow`): the label holder
learns |B| and |A ∩ B| only. Its best handle is position: it knows the order in which it sent its blinded ids, and
gets back their doubly blinded values, which it can test against the partner's doubly blinded set. In mode
"label_holder" the partner keeps the order, so the guess is always right (the control); in mode "cardinality"
the partner reshuffles, so each position's hit is independent of which id sat there: the guess is a coin toss.
With 400 ids (200 common) a chance-level guesser scores 0.5 +- 0.025; the test fails only above 0.62 (about 5
standard deviations: a false failure has probability below 1e-6).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from sampan.core.party import PartyApp
from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.psi import run_psi
from sampan.vertical.psi_party import PsiParty
from sampan.wire import Message

N, COMMON = 400, 200


class CuriousLabelHolder(PsiParty):
    """Follows the protocol, and keeps what it sees at the last step: its own sent order and the returned points."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.view: dict[str, np.ndarray] = {}

    def _finish(self, request: Message) -> Message:
        peer = str(request.meta["peer"])
        session = self._sessions[peer]
        inner = self._open(request, peer, "psi.respond")
        assert session.perm is not None and session.doubled_peer is not None
        self.view = {"perm": session.perm.copy(), "returned": np.asarray(inner.arrays["points"]).copy(),
                     "peer_doubled": session.doubled_peer.copy()}
        return super()._finish(request)


def _run(mode: str, seed: int) -> tuple[CuriousLabelHolder, list[str], set[str]]:
    rng = random.Random(seed)
    pool = [f"HK{rng.randrange(10**9):09d}" for _ in range(2 * N)]
    pool = list(dict.fromkeys(pool))[: 2 * N - COMMON]
    a_ids, b_ids = pool[:N], pool[:COMMON] + pool[N:]
    rng.shuffle(a_ids)
    rng.shuffle(b_ids)
    bank = CuriousLabelHolder("bank", np.array(a_ids, dtype=object))
    partner = PsiParty("partner", np.array(b_ids, dtype=object))
    keys = {"bank": PartyKeys.generate(), "partner": PartyKeys.generate()}
    public = {n: k.public_bytes for n, k in keys.items()}
    roles = {"bank": "label_holder", "partner": "partner"}
    apps = {}
    for name, party in (("bank", bank), ("partner", partner)):
        app = PartyApp(name)
        party.register(app)
        party.channels = SealedChannels(name, keys[name], public, f"run-{seed}", roles=roles)
        apps[name] = app
    run_psi(InProcessTransport(apps), f"run-{seed}", "bank", "partner", mode)
    return bank, a_ids, set(b_ids)


def _positional_guess_accuracy(bank: CuriousLabelHolder, a_ids: list[str], b_ids: set[str]) -> float:
    """Guess 'in the intersection' for the id sent at position k iff the k-th returned point is in the partner's
    doubly blinded set; score the guesses against the truth."""
    view = bank.view
    peer = {bytes(p) for p in view["peer_doubled"]}
    hits = np.array([bytes(p) in peer for p in view["returned"]])
    truth = np.array([a_ids[row] in b_ids for row in view["perm"]])
    return float(np.mean(hits == truth))


def test_control_without_the_reshuffle_the_label_holder_knows_every_match() -> None:
    bank, a_ids, b_ids = _run("label_holder", seed=1)
    assert _positional_guess_accuracy(bank, a_ids, b_ids) == 1.0


@pytest.mark.parametrize("seed", [2, 3])
def test_in_cardinality_mode_the_label_holder_guesses_membership_at_chance(seed: int) -> None:
    bank, a_ids, b_ids = _run("cardinality", seed)
    assert bank.cardinality["partner"] == COMMON  # it does learn the count, as stated
    assert "partner" not in bank.rows  # and keeps no row set for the partner
    accuracy = _positional_guess_accuracy(bank, a_ids, b_ids)
    assert accuracy < 0.62, f"positional guess right {accuracy:.1%} of the time: the reshuffle leaks membership"
