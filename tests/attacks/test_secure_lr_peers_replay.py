"""Finding 7 (review R6-B): replaying `vertical.peers` must not let the coordinator repeat a PRG stream.

A feature holder other than the helper sends the helper Z - rho with rho = PRG(bank pair, vlr/<instance>/z/t).
On the reviewed code the coordinator re-sent `vertical.peers` with the same signed keys: every party built a
new SealedChannels with the SAME pairwise PRG keys, `SecureLRParty` reset its seen-set on the new channels
object, and a replayed instance nonce was accepted, so the helper subtracted two envelopes of batch t and read
the partner's partial-logit differences row by row (checked by running this attack there).

Now `peers` is one-shot per `hello` (the private key is dropped once channels exist), the seen-set is kept per
run (`sampan.vertical.lr_runs`, not per channels), and the instance nonce is H(coordinator nonce | bank nonce | helper
nonce) with each
residual holder's own fresh contribution, so a repeat needs a holder's cooperation even if a party forgot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from sampan.crypto.ring import encode, to_signed
from sampan.data import make_sme_consortium
from sampan.runtime.federation import build_inprocess_vertical
from sampan.transport import PartyError
from sampan.vertical import training as T
from sampan.vertical.secure_lr import POLY
from sampan.vertical.secure_lr_party import SecureLRParty
from sampan.vertical.session import Splits, VerticalSession


def _signed_keys(session: VerticalSession) -> Callable[[], Any]:
    """The coordinator's key exchange, kept so it can be replayed."""
    hello = session.relay.wave(session.transport, (session.relay.request(p, "vertical.hello") for p in session.parties))
    keys, roles = {}, {}
    for r in hello:
        keys[f"key:{r.sender}"] = r.arrays["public_key"]
        keys.update({f"{r.sender}/{k}": r.arrays[k] for k in ("certificate", "signature") if k in r.arrays})
        roles[r.sender] = str(r.meta.get("role", ""))
    return lambda: session.relay.wave(
        session.transport, (session.relay.request(p, "vertical.peers", keys, {"roles": roles}) for p in session.parties)
    )


class _Spy:
    """The helper's view of the partner's envelopes (z - rho) and, for the test only, the partner's true Z."""

    def __init__(self, parties: dict[str, Any]) -> None:
        self.env: dict[tuple[int, int], np.ndarray] = {}
        self.truth: dict[tuple[int, int], np.ndarray] = {}
        self.k = 0
        helper_app, partner_app = parties["payments"].app, parties["delivery"].app
        share, forward = helper_app._handlers["vlr.share"], partner_app._handlers["vlr.forward"]

        def spy_share(msg: Any) -> Any:
            for key, v in msg.arrays.items():
                if key.startswith("from:delivery:"):
                    opened = parties["payments"].channels.open_arrays("delivery", v)
                    if "z" in opened:
                        self.env[(self.k, int(msg.meta["t"]))] = opened["z"].copy()
            return share(msg)

        def god_forward(msg: Any) -> Any:
            out, st = forward(msg), parties["delivery"].lr.state
            z = (st.X_val if st.val else st.X)[st.rows] @ st.weights
            self.truth[(self.k, int(msg.meta["t"]))] = encode(np.clip(z, -st.logit_clip, st.logit_clip), POLY.in_bits)
            return out

        helper_app._handlers["vlr.share"], partner_app._handlers["vlr.forward"] = spy_share, god_forward

    def reads_differences(self) -> bool:
        common = [t for (k, t) in self.env if k == 0 and (1, t) in self.env]
        assert common
        for t in common:
            diff = to_signed(self.env[(0, t)] - self.env[(1, t)])
            want = to_signed(self.truth[(0, t)] - self.truth[(1, t)])
            if np.count_nonzero(want) and np.array_equal(diff, want):
                return True
        return False


def _run() -> tuple[VerticalSession, dict[str, Any], Callable[[], Any]]:
    transport, parties = build_inprocess_vertical(make_sme_consortium(3000, seed=11).vertical)
    session = VerticalSession(transport, label_holder="bank", partners=["payments", "delivery"], run_id="r6b")
    peers = _signed_keys(session)
    peers()
    session.align()
    return session, parties, peers


def test_replaying_peers_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    session, parties, peers = _run()
    sp = Splits.random(session.n_aligned or 0, seed=1)
    monkeypatch.setattr(T.secrets, "token_hex", lambda n=16: "f" * 32)  # the coordinator repeats its nonce
    config = T.VerticalLRConfig(shared_weights=False, epochs=1, batch_size=256, patience=1)
    session.train(sp, config, seed=2)
    with pytest.raises(PartyError, match="refusing a second vertical.peers"):
        peers()
    with pytest.raises(PartyError, match="reuses an earlier instance nonce"):
        session.train(sp, config, seed=3)


def test_a_repeated_coordinator_nonce_gives_fresh_streams_even_if_a_party_forgot_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every party forgets the nonces it has seen (a restart, or the reviewed object-identity reset) and the
    coordinator repeats its nonce and the schedule: the residual holders' own contributions still make every
    PRG label new, so the helper's two envelopes of batch t differ by noise, not by Z_1 - Z_2."""
    session, parties, _ = _run()
    sp = Splits.random(session.n_aligned or 0, seed=1)
    spy = _Spy(parties)
    monkeypatch.setattr(T.secrets, "token_hex", lambda n=16: "f" * 32)
    monkeypatch.setattr(SecureLRParty, "_fresh", lambda self, run_id, instance, seed: None)
    config = T.VerticalLRConfig(shared_weights=False, epochs=1, batch_size=256, patience=1)
    session.train(sp, config, seed=2)
    spy.k = 1
    session.train(sp, config, seed=3)
    assert not spy.reads_differences(), "the helper read the partner's partial-logit differences"
