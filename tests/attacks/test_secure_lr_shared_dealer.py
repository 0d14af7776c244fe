"""Finding 22 with shared weights: a malicious dealer shifts one validation row's logit to read its label.

With shared weights the dealer deals, per row, the co-holder's half U b - D of a party's partial logit; it
cannot be audited without revealing a weight share. A dealer that adds a large shift there at validation
position k moves that row's residual to ~(1 - y) or ~(-y) and reads the label from the opened score (against
an uncorrupted epoch). The parties now order validation rows by a permutation derived from the instance nonce
(which includes the residual holders' own sealed contributions), so position k is a row the coordinator cannot
name: the reads it gets are labels of unknown rows. Positive control: with the identity order the same dealer
reads every targeted label.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_secure_lr_labels import _session

from sampan.crypto.dealer import Dealer
from sampan.data import make_sme_consortium
from sampan.vertical import secure_lr_party, training
from sampan.vertical.session import Splits
from sampan.vertical.training import VerticalLRConfig

SHIFT = np.uint64(6 << 40)  # +6 on the logit (shares at 2^-40)


def _targeting_dealer(targets: list[int]) -> type[Dealer]:
    """Shifts the bank's partial logit at validation position targets[j] in epoch 2j+2 (odd epochs clean)."""

    class Shifting(Dealer):
        calls = 0

        def logit_correction(self, party, holder, t, rows, *, validation):  # type: ignore[no-untyped-def]
            out = super().logit_correction(party, holder, t, rows, validation=validation)
            if validation and party == "bank" and rows[0] == 0:
                Shifting.calls += 1
                epoch = Shifting.calls
                if epoch % 2 == 0 and epoch // 2 - 1 < len(targets):
                    out = out.copy()
                    out[targets[epoch // 2 - 1]] += SHIFT
            return out

    return Shifting


def _attack(monkeypatch: pytest.MonkeyPatch, identity_order: bool) -> tuple[int, int, list[int], list[int]]:
    """Returns (labels read right, targets, targeted positions, rows the shift actually hit)."""
    session, parties = _session(make_sme_consortium(3000, seed=11).vertical)
    sp = Splits.random(session.n_aligned or 0, seed=1)
    y_val = parties["bank"].data.y[parties["bank"].psi.aligned_rows][sp.val]
    targets = [int(k) for k in np.flatnonzero(y_val == 1)[:5]] + [int(k) for k in np.flatnonzero(y_val == 0)[:3]]
    orders: list[np.ndarray] = []
    real_order = secure_lr_party.validation_order

    def recording_order(instance: str, n: int) -> np.ndarray:
        order = np.arange(n) if identity_order else real_order(instance, n)
        orders.append(order)
        return order

    monkeypatch.setattr(secure_lr_party, "validation_order", recording_order)
    monkeypatch.setattr(training, "Dealer", _targeting_dealer(targets))
    epochs = 2 * len(targets) + 1
    result = session.train(sp, VerticalLRConfig(epochs=epochs, batch_size=512, learning_rate=0.002,
                                                patience=epochs), seed=1)
    scores = np.array(result.val_brier) * len(sp.val)
    read = [int(scores[2 * j + 1] - scores[2 * j] < 0) for j in range(len(targets))]  # score fell: y = 1
    right = sum(int(r == y_val[k]) for r, k in zip(read, targets, strict=False))
    assert orders, "the parties never ordered the validation rows"
    hit = [int(orders[-1][k]) for k in targets]  # position -> row: the row the shifted position holds
    return right, len(targets), targets, hit


def test_a_dealer_cannot_aim_a_logit_shift_at_a_named_validation_row(monkeypatch: pytest.MonkeyPatch) -> None:
    # The shift lands on the row the secret order puts at that position, not on the row the dealer named.
    # (Counting right guesses instead would be flaky: with a 5% default rate most rows it hits are
    # negatives, like most rows it names.) A fixed point of a random order has probability 1/|val|.
    _, n, targets, hit = _attack(monkeypatch, identity_order=False)
    named = sum(int(h == k) for h, k in zip(hit, targets, strict=False))
    assert named <= 1, f"the dealer's shift hit {named} of the {n} rows it named"


def test_positive_control_with_the_identity_order_the_dealer_reads_the_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    right, n, targets, hit = _attack(monkeypatch, identity_order=True)
    assert hit == targets and right == n
