"""Finding 8: with DP on the WOE counts, the bank must never decode a partner's exact per-bin counts.

The curious bank runs the protocol honestly and uses everything it receives: the partner's sealed sums,
the dealer's sums, its own keys. Before the fix the partner sent exact masked sums and the bank added the
"DP" noise itself after decoding — so it held every exact count. Now the partner adds the noise inside
the masked sum, and what the bank decodes differs from the exact counts by noise of the scale the
partner's account charges.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pytest

from sampan.data import make_sme_consortium
from sampan.runtime.federation import build_inprocess_vertical
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.histograms import decode_sums, histogram_privacy
from sampan.vertical.session import Splits, VerticalSession
from sampan.vertical.woe import federated_woe, partner_sensitivity2
from sampan.wire import Message


class BankTap(InProcessTransport):
    """The bank's own view of the messages delivered to it (it opens its envelopes with its own keys)."""

    def __init__(self, parties: dict[str, Any]) -> None:
        super().__init__({n: p.app for n, p in parties.items()})
        self.party_objects = parties
        self.decoded: dict[str, np.ndarray] = {}

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        for m in messages:
            if m.recipient == "bank" and m.kind == "woe.finish":
                channels = self.party_objects["bank"].channels
                for key, value in m.arrays.items():
                    if key.startswith("from:"):
                        sender = key.split(":")[1]
                        sums = channels.open_arrays(sender, value)["s"]
                        self.decoded[sender] = decode_sums(sums - m.arrays[f"dealer:{sender}"])
            yield from super().exchange([m])


def _exact_counts(party: Any, y: np.ndarray) -> np.ndarray:
    """The partner's exact (event, row) counts per fine bin, over all its features, as the bank would want them."""
    st = party.woe._state
    offsets = np.array([s.offset for s in st["slots"]], dtype=np.int64)
    total = int(sum(s.n_bins for s in st["slots"]))
    idx = (st["bins"].astype(np.int64) + offsets).ravel()
    d = st["bins"].shape[1]
    return np.stack([np.bincount(idx, weights=np.repeat(y, d), minlength=total),
                     np.bincount(idx, minlength=total).astype(float)])


def test_bank_decodes_only_noised_partner_counts_at_the_charged_scale() -> None:
    tables = {k: v for k, v in make_sme_consortium(2000, seed=3).vertical.items()}
    _, parties = build_inprocess_vertical(tables)
    tap = BankTap(parties)
    session = VerticalSession(tap, label_holder="bank", partners=["payments", "delivery"], run_id="woe-dp")
    session.connect()
    session.align()
    splits = Splits.random(session.n_aligned or 0, seed=1)
    out = federated_woe(tap, session.run_id, "bank", ["payments", "delivery"], splits.train, fine_bins=16,
                        dp_epsilon=1.0)
    y = parties["bank"].data.y[parties["bank"].psi.aligned_rows][splits.train].astype(float)
    residuals = []
    for partner in ("payments", "delivery"):
        exact = _exact_counts(parties[partner], y)
        seen = tap.decoded[partner]
        assert seen.shape == exact.shape
        # Not one exact count survives in the bank's hands (old code: every one did).
        assert np.mean(np.isclose(seen, exact, atol=0.5)) < 0.2, f"the bank decoded {partner}'s exact counts"
        account = out["privacy"][partner]
        d = len(parties[partner].data.feature_names)
        assert (
            account["sensitivity"] ** 2 == pytest.approx(partner_sensitivity2(d)) and partner_sensitivity2(d) == 4 * d
        )
        recomputed = histogram_privacy(1, 4 * d, account["sigma"], account["delta"])
        assert recomputed["epsilon"] <= 1.0 + 1e-9  # the noise the partner added meets the requested epsilon
        residuals.append((seen - exact) / account["sigma"])
    z = np.concatenate([r.ravel() for r in residuals])
    assert 0.8 < z.std() < 1.2 and abs(z.mean()) < 0.2  # noise at the charged scale, centred
    # The tables partners receive are noised for the bank's labels, charged to the bank.
    assert out["privacy"]["bank"]["sigma"] > 0


def test_without_dp_the_receipt_says_the_bank_sees_exact_counts() -> None:
    from sampan.vertical.woe import REVEALS, VIEWS

    assert "exact without DP" in " ".join(v[3] for v in VIEWS if v[2] == "decoded:*")
    assert "inside the masked sums" in REVEALS
