"""Review R3 (issue 11, findings 6 and 8 for vertical WOE): every party keeps its own privacy policy and ledger.

A coordinator used to be able to re-run federated WOE as often as it liked: each run gave the bank fresh
noised counts of the partner's bins while the partner's account was overwritten with one release (500
re-runs: true epsilon 40 vs 1 reported); it could also switch the noise off (`dp_epsilon=None`) or turn
it down, and the partner obeyed. Now each party checks every release against its `PartyPrivacyPolicy`
(minimum noise multiplier, DP required, budget) and charges its own ledger write-ahead; a protocol
instance carries the party's own nonce, and a replayed release is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pytest

from sampan.data import make_sme_consortium
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.runtime.federation import build_inprocess_vertical
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.session import Splits, VerticalSession
from sampan.vertical.woe import federated_woe
from sampan.wire import Message


class Replayer(InProcessTransport):
    """A coordinator that sends each `kind` request twice (keeping the second answer)."""

    def __init__(self, apps: dict[str, Any], kind: str | None = None) -> None:
        super().__init__(apps)
        self.kind = kind

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        for m in messages:
            if m.kind == self.kind:
                list(super().exchange([m]))
            yield from super().exchange([m])


def _session(kind: str | None = None) -> tuple[VerticalSession, Replayer, dict[str, Any], Splits]:
    tables = {k: v for k, v in make_sme_consortium(1500, seed=9).vertical.items() if k in ("bank", "payments")}
    _, parties = build_inprocess_vertical(tables)
    transport = Replayer({name: p.app for name, p in parties.items()}, kind)
    session = VerticalSession(transport, label_holder="bank", partners=["payments"], run_id="woe-policy")
    session.connect()
    session.align()
    return session, transport, parties, Splits.random(session.n_aligned or 0, seed=1)


def test_repeated_woe_releases_add_up_in_the_partners_own_account() -> None:
    session, transport, parties, splits = _session()
    epsilons = []
    for _ in range(3):
        out = federated_woe(transport, session.run_id, "bank", ["payments"], splits.train, fine_bins=16, dp_epsilon=1.0)
        epsilons.append(out["privacy"]["payments"]["epsilon"])
    account = parties["payments"].woe.privacy
    assert account["releases"] == 3, "the partner's account was overwritten, not added to"
    assert epsilons[0] <= 1.0 < epsilons[1] < epsilons[2]
    ledger = parties["payments"].policy.ledger("payments")
    assert len(ledger.events) == 3 and ledger.spent("payments") > 1.0
    assert parties["bank"].woe.privacy["releases"] == 3  # the bank's label noise too


def test_partner_refuses_woe_beyond_its_own_budget() -> None:
    session, transport, parties, splits = _session()
    parties["payments"].policy.epsilon = 2.0
    runs = 0
    with pytest.raises(Exception, match="refuses: its own budget would be exceeded"):
        for _ in range(20):
            federated_woe(transport, session.run_id, "bank", ["payments"], splits.train, fine_bins=16, dp_epsilon=1.0)
            runs += 1
    assert 1 <= runs < 20
    assert parties["payments"].policy.ledger("payments").spent("payments") <= 2.0


def test_partner_refuses_woe_without_noise_under_its_policy() -> None:
    session, transport, parties, splits = _session()
    parties["payments"].policy.required_levels = frozenset({"WOE"})
    with pytest.raises(Exception, match="refuses woe without noise"):
        federated_woe(transport, session.run_id, "bank", ["payments"], splits.train, fine_bins=16, dp_epsilon=None)


def test_partner_refuses_woe_noise_below_its_minimum_multiplier() -> None:
    session, transport, parties, splits = _session()
    with pytest.raises(Exception, match="below its minimum noise multiplier"):  # default minimum 0.5
        federated_woe(transport, session.run_id, "bank", ["payments"], splits.train, fine_bins=16, dp_epsilon=1e4)
    assert parties["payments"].policy.ledger("payments").events == ()


def test_partner_refuses_a_replayed_woe_sum() -> None:
    session, transport, parties, splits = _session("woe.sum")
    with pytest.raises(Exception, match="already answered in this protocol instance"):
        federated_woe(transport, session.run_id, "bank", ["payments"], splits.train, fine_bins=16, dp_epsilon=1.0)
    assert len(parties["payments"].policy.ledger("payments").events) == 1  # the first answer, charged


def test_under_dp_the_coordinator_is_not_told_how_many_of_the_banks_features_pass() -> None:
    session, transport, _, splits = _session()
    out = federated_woe(transport, session.run_id, "bank", ["payments"], splits.train, fine_bins=16, dp_epsilon=1.0)
    assert set(out["selected"]) == {"payments"}
    exact = federated_woe(transport, session.run_id, "bank", ["payments"], splits.train, fine_bins=16)
    assert set(exact["selected"]) == {"bank", "payments"}


def test_policy_is_one_ledger_per_party_shared_with_gbdt() -> None:
    _, _, parties, _ = _session()
    assert parties["payments"].woe.policy is parties["payments"].gbdt.policy is parties["payments"].policy
    assert isinstance(parties["payments"].policy, PartyPrivacyPolicy)
    assert np.isfinite(parties["payments"].policy.account("payments")["epsilon_spent"])
