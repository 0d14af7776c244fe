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

import re
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pytest

from sampan.data import make_sme_consortium
from sampan.models.gbdt import GBDTParams
from sampan.runtime.federation import build_inprocess_vertical
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.gbdt import train_vertical_gbdt
from sampan.vertical.histograms import encode_values
from sampan.vertical.session import Splits, VerticalSession
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
                m = Message(
                    m.run_id, m.step, m.sender, m.recipient, m.kind, {**m.arrays, "dealer:payments": bad}, m.meta
                )
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
        train_vertical_gbdt(
            transport,
            session.run_id,
            "bank",
            ["payments"],
            splits.train,
            splits.val,
            GBDTParams(n_trees=2, max_depth=2, n_bins=8),
            hist_noise=hist_noise,
        )
    assert transport.corrupted >= 1


@pytest.mark.parametrize("dp_epsilon", [None, 1.0])
def test_bank_stops_when_the_dealer_shifts_a_woe_count(dp_epsilon: float | None) -> None:
    session, transport = _session("woe.finish", shift=500.0 if dp_epsilon is None else 5000.0)
    splits = Splits.random(session.n_aligned or 0, seed=1)
    with pytest.raises(Exception, match="does not add up.*dealer"):
        federated_woe(transport, session.run_id, "bank", ["payments"], splits.train, dp_epsilon=dp_epsilon)
    assert transport.corrupted == 1


class LyingDealer(CorruptingDealer):
    """A dealer that corrupts its sums and also tells the bank a different noise level than the partner:
    for GBDT `hist_noise` (bank told `bank_noise`, partner told 0), for WOE `dp_epsilon` (bank told
    `bank_epsilon`, a far larger sigma than the partner's)."""

    def __init__(
        self,
        apps: dict[str, Any],
        kind: str,
        shift: float,
        *,
        bank_noise: float | None = None,
        bank_epsilon: float | None = None,
    ) -> None:
        super().__init__(apps, kind, shift)
        self.bank_noise, self.bank_epsilon = bank_noise, bank_epsilon

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        for m in messages:
            meta = dict(m.meta)
            if self.bank_noise is not None and m.kind == "vgb.setup":
                meta["hist_noise"] = self.bank_noise if m.recipient == "bank" else 0.0
            if self.bank_epsilon is not None and m.kind == "woe.finish":
                meta["dp_epsilon"] = self.bank_epsilon
            yield from super().exchange([Message(m.run_id, m.step, m.sender, m.recipient, m.kind, m.arrays, meta)])


def _lying_session(kind: str, shift: float, **lies: float) -> tuple[VerticalSession, LyingDealer, dict[str, Any]]:
    tables = {k: v for k, v in make_sme_consortium(1500, seed=9).vertical.items() if k in ("bank", "payments")}
    _, parties = build_inprocess_vertical(tables)
    transport = LyingDealer({n: p.app for n, p in parties.items()}, kind, shift, **lies)
    session = VerticalSession(transport, label_holder="bank", partners=["payments"], run_id="r3")
    session.connect()
    session.align()
    return session, transport, parties


@pytest.mark.parametrize("kind", ["woe.finish", "vgb.step"])
def test_a_corrupting_dealer_reads_none_of_the_banks_totals_from_its_error(kind: str) -> None:
    """Review R3: the totals check's error travels to the coordinator (the dealer that caused it); it used
    to quote the bank's exact totals (the number of positive labels; a node's sum g, sum h)."""
    session, transport, _ = _lying_session(kind, shift=1e7)
    splits = Splits.random(session.n_aligned or 0, seed=1)
    with pytest.raises(Exception, match="failed the totals check") as info:
        if kind == "woe.finish":
            federated_woe(transport, session.run_id, "bank", ["payments"], splits.train, dp_epsilon=1.0)
        else:
            train_vertical_gbdt(
                transport,
                session.run_id,
                "bank",
                ["payments"],
                splits.train,
                splits.val,
                GBDTParams(n_trees=2, max_depth=2, n_bins=8),
                hist_noise=2.0,
            )
    text = str(info.value)
    where = re.search(
        r"feature \d+ of partner 'payments' failed the totals check at node (all training rows|\d+/\d+):", text
    )
    assert where is not None, text
    # Beyond naming feature and node, not one digit reaches the coordinator (old code: "[23.0, 356.0]")
    rest = text.replace(where.group(0), "")
    assert re.search(r"\d", rest) is None, f"a data-derived value reached the coordinator: {text}"


def test_the_coordinator_cannot_widen_the_banks_gbdt_check_by_claiming_noise() -> None:
    """Review R3: the bank's slack came from the coordinator's vgb.setup meta; told 'hist_noise = 1e4' while
    the partner was told 0, it accepted corrupted sums. Now the partner seals the sigma it used."""
    session, transport, _ = _lying_session("vgb.step", shift=-200.0, bank_noise=1e4)
    splits = Splits.random(session.n_aligned or 0, seed=1)
    with pytest.raises(Exception, match="reports histogram noise sigma=0 but the job agreed"):
        train_vertical_gbdt(
            transport,
            session.run_id,
            "bank",
            ["payments"],
            splits.train,
            splits.val,
            GBDTParams(n_trees=2, max_depth=2, n_bins=8),
            hist_noise=0.0,
        )


def test_the_coordinator_cannot_widen_the_banks_woe_check_by_claiming_a_smaller_epsilon() -> None:
    session, transport, _ = _lying_session("woe.finish", shift=2000.0, bank_epsilon=0.001)
    splits = Splits.random(session.n_aligned or 0, seed=1)
    with pytest.raises(Exception, match="reports histogram noise sigma=.* but the job agreed"):
        federated_woe(transport, session.run_id, "bank", ["payments"], splits.train, dp_epsilon=1.0)
