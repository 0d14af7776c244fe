"""Review R3 (issue 11, finding 6 for vertical GBDT): a partner checks and charges its own histogram releases.

A partner used to keep no account of its noised histograms and to obey any `hist_noise` the coordinator
sent, 0 included. Now its `PartyPrivacyPolicy` checks the noise multiplier (sigma / sensitivity) at
`vgb.setup`, refuses exact histograms when its policy requires DP on GBDT, charges every noised
`vgb.serve` reply to its own ledger before it leaves (refusing past its budget), refuses a replayed
request label, and reports its own account.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from sampan.data import make_sme_consortium
from sampan.models.gbdt import GBDTParams
from sampan.runtime.federation import build_inprocess_vertical
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.gbdt import histogram_sensitivity2, train_vertical_gbdt
from sampan.vertical.session import Splits, VerticalSession
from sampan.wire import Message

PARAMS = GBDTParams(n_trees=2, max_depth=2, n_bins=8)


class Replayer(InProcessTransport):
    """A coordinator that sends the first `vgb.serve` of each label twice."""

    def __init__(self, apps: dict[str, Any], replay: bool) -> None:
        super().__init__(apps)
        self.replay = replay

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        for m in messages:
            if self.replay and m.kind == "vgb.serve":
                list(super().exchange([m]))
            yield from super().exchange([m])


def _session(replay: bool = False) -> tuple[VerticalSession, Replayer, dict[str, Any], Splits]:
    tables = {k: v for k, v in make_sme_consortium(1200, seed=9).vertical.items() if k in ("bank", "payments")}
    _, parties = build_inprocess_vertical(tables)
    transport = Replayer({name: p.app for name, p in parties.items()}, replay)
    session = VerticalSession(transport, label_holder="bank", partners=["payments"], run_id="gbdt-policy")
    session.connect()
    session.align()
    return session, transport, parties, Splits.random(session.n_aligned or 0, seed=1)


def _train(session: VerticalSession, transport: Replayer, splits: Splits, hist_noise: float) -> Any:
    return train_vertical_gbdt(transport, session.run_id, "bank", ["payments"], splits.train, splits.val, PARAMS,
                               hist_noise=hist_noise)


def test_partner_charges_every_noised_node_and_its_account_adds_up_over_the_run() -> None:
    session, transport, parties, splits = _session()
    first = _train(session, transport, splits, 3.0).privacy["payments"]
    second = _train(session, transport, splits, 3.0).privacy["payments"]
    assert second["releases"] > first["releases"] > 0 and second["epsilon"] > first["epsilon"]
    ledger = parties["payments"].policy.ledger("payments")
    assert sum(e.count for e in ledger.events) == second["releases"]  # every node charged by the partner itself
    assert second["ledger"]["epsilon_spent"] == pytest.approx(ledger.spent("payments"))


def test_partner_refuses_histogram_noise_below_its_minimum_multiplier() -> None:
    session, transport, parties, splits = _session()
    d = len(parties["payments"].data.feature_names)
    too_little = 0.2 * histogram_sensitivity2(d) ** 0.5  # noise multiplier 0.2 < the default minimum 0.5
    with pytest.raises(Exception, match="below its minimum noise multiplier"):
        _train(session, transport, splits, too_little)
    assert parties["payments"].policy.ledger("payments").events == ()


def test_partner_requiring_dp_refuses_exact_histograms() -> None:
    session, transport, parties, splits = _session()
    parties["payments"].policy.required_levels = frozenset({"GBDT"})
    with pytest.raises(Exception, match="refuses gbdt without noise"):
        _train(session, transport, splits, 0.0)


def test_partner_refuses_histograms_beyond_its_own_budget() -> None:
    session, transport, parties, splits = _session()
    parties["payments"].policy.epsilon = 3.0
    with pytest.raises(Exception, match="refuses: its own budget would be exceeded"):
        for _ in range(10):
            _train(session, transport, splits, 3.0)
    assert parties["payments"].policy.ledger("payments").spent("payments") <= 3.0


def test_partner_refuses_a_replayed_histogram_request() -> None:
    session, transport, _, splits = _session(replay=True)
    with pytest.raises(Exception, match="already answered in this protocol instance"):
        _train(session, transport, splits, 3.0)
