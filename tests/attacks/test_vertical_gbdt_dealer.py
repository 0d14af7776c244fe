"""Finding 22 (dealer-masked histograms): a coordinator that corrupts the dealer's sums is caught where the
bank can see it.

The coordinator deals the masks and returns their per-bin sums; the bank subtracts them from the
partner's sealed sums. A dishonest dealer shifting those sums used to steer the bank's splits (or WOE
bins) silently. The bank now checks that each partner feature's bins add up to the node total it knows
itself, and stops with an error naming the dealer. (Mass moved between bins of one feature keeps every
total and is not detected, and with DP noise only shifts beyond 8 noise standard deviations are: stated
in `sampan.vertical.histograms`.)
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np
import pytest

from sampan.data import make_sme_consortium
from sampan.models.gbdt import GBDTParams
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.gbdt import train_vertical_gbdt
from sampan.vertical.histograms import encode_values
from sampan.vertical.session import Splits, VerticalSession, build_inprocess_vertical
from sampan.vertical.woe import federated_woe
from sampan.wire import Message


class CorruptingDealer(InProcessTransport):
    """The coordinator as a dishonest dealer: adds `shift` to one bin of the sums it hands the bank."""

    def __init__(self, apps: dict[str, Any], kind: str, shift: float) -> None:
        super().__init__(apps)
        self.kind, self.shift, self.corrupted = kind, shift, 0

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        for m in messages:
            if m.kind == self.kind and "dealer:payments" in m.arrays:
                bad = np.array(m.arrays["dealer:payments"], copy=True)
                flat = bad.reshape(-1)
                flat[3:4] += encode_values(np.array([self.shift]))  # in the ring: wraps, as the dealer's sums do
                m = Message(m.run_id, m.step, m.sender, m.recipient, m.kind, {**m.arrays, "dealer:payments": bad}, m.meta)
                self.corrupted += 1
            yield from super().exchange([m])


def _session(kind: str, shift: float) -> tuple[VerticalSession, CorruptingDealer]:
    tables = {k: v for k, v in make_sme_consortium(1500, seed=9).vertical.items() if k in ("bank", "payments")}
    _, parties = build_inprocess_vertical(tables)
    transport = CorruptingDealer({n: p.app for n, p in parties.items()}, kind, shift)
    session = VerticalSession(transport, label_holder="bank", partners=["payments"], run_id="dealer")
    session.connect()
    session.align()
    return session, transport


@pytest.mark.parametrize("hist_noise", [0.0, 2.0])
def test_bank_stops_when_the_dealer_shifts_a_gbdt_histogram(hist_noise: float) -> None:
    session, transport = _session("vgb.step", shift=-200.0 if hist_noise == 0 else -2000.0)
    splits = Splits.random(session.n_aligned or 0, seed=1)
    with pytest.raises(Exception, match="does not add up.*dealer"):
        train_vertical_gbdt(transport, session.run_id, "bank", ["payments"], splits.train, splits.val,
                            GBDTParams(n_trees=2, max_depth=2, n_bins=8), hist_noise=hist_noise)
    assert transport.corrupted >= 1


@pytest.mark.parametrize("dp_epsilon", [None, 1.0])
def test_bank_stops_when_the_dealer_shifts_a_woe_count(dp_epsilon: float | None) -> None:
    session, transport = _session("woe.finish", shift=500.0 if dp_epsilon is None else 5000.0)
    splits = Splits.random(session.n_aligned or 0, seed=1)
    with pytest.raises(Exception, match="does not add up.*dealer"):
        federated_woe(transport, session.run_id, "bank", ["payments"], splits.train, dp_epsilon=dp_epsilon)
    assert transport.corrupted == 1
