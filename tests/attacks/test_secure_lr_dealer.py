"""Finding 22 (secure LR): a malicious dealer shapes its correlated randomness to read validation labels.

The coordinator deals the truncation triples. If it adds e to the helper's half of floor(t / 2^s) for
one tuple, the residual of the row that uses it becomes r_k - e, and the one number it is shown per
epoch, the validation sum of squared residuals, becomes sum r^2 - 2 e r_k + e^2: with a large e it
reads r_k = sigma(z_k) - y_k, hence the label y_k and the joint score, one row per epoch. Nothing on
commit 1064fb2 checked the dealt tuples (this attack worked there unchanged; see the report).

Now every batch is dealt extra tuples that the two residual holders sacrifice: which ones is drawn from
their pairwise PRG, which the dealer cannot compute, and the helper opens and checks them (powers of
a, truncation triples). A corrupted tuple is caught with probability ~1/9 per tuple; a dealer that
corrupts many is caught at once. Run with the audit switched off, the same dealer reads the labels.
"""

from __future__ import annotations

import numpy as np
import pytest

from sampan.crypto.dealer import Dealer
from sampan.data import make_sme_consortium
from sampan.runtime.federation import build_inprocess_vertical
from sampan.transport import PartyError
from sampan.vertical import secure_lr, secure_lr_batch, secure_lr_party, training
from sampan.vertical.secure_lr import RESIDUAL_BITS
from sampan.vertical.session import Splits, VerticalSession
from sampan.vertical.training import VerticalLRConfig

SHIFT = 2.0 ** 13  # e, in residual units: large enough that -2 e r_k dominates the sum of squares


def _session() -> tuple[VerticalSession, dict]:  # type: ignore[type-arg]
    transport, parties = build_inprocess_vertical(make_sme_consortium(3000, seed=11).vertical)
    session = VerticalSession(transport, label_holder="bank", partners=["payments", "delivery"], run_id="dealer")
    session.connect()
    session.align()
    return session, parties


def _malicious_dealer(validation_dealt: int, every_tuple: bool, targets: list[int] | None = None) -> type[Dealer]:
    class ShiftingDealer(Dealer):
        """Adds e to the helper's half of floor(t / 2^s): tuple targets[k] in the k-th validation pass (or every
        tuple)."""

        epoch = 0

        def truncation_pair(self, label: str, n: int, shift: int, seeded: str) -> list[np.ndarray]:
            out = super().truncation_pair(label, n, shift, seeded)
            if n == validation_dealt:  # the dealer knows the schedule: this is the validation batch
                k = targets[ShiftingDealer.epoch] if targets else ShiftingDealer.epoch % n
                hit = slice(None) if every_tuple else slice(k, k + 1)
                out[1][hit] += np.uint64(int(SHIFT * 2 ** RESIDUAL_BITS))
                ShiftingDealer.epoch += 1
            return out

    return ShiftingDealer


def test_without_the_audit_a_shifting_dealer_reads_validation_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack is real: with no sacrificed tuples (as on 1064fb2) the dealer reads one label per epoch."""
    session, parties = _session()
    splits = Splits.random(session.n_aligned or 0, seed=1)
    n_val = len(splits.val)
    monkeypatch.setattr(secure_lr_batch, "audit_count", lambda n: 0)
    monkeypatch.setattr(training, "audit_count", lambda n: 0)
    # and with validation rows in their plain order (the secret per-instance order also hides which row a
    # corrupted position is: tests/attacks/test_secure_lr_shared_dealer.py)
    monkeypatch.setattr(secure_lr_party, "validation_order", lambda instance, n: np.arange(n))
    y_val = parties["bank"].data.y[parties["bank"].psi.aligned_rows][splits.val]  # the test's god view
    targets = [*np.flatnonzero(y_val == 1)[:3], *np.flatnonzero(y_val == 0)[:3]]  # the rows it chooses to read
    monkeypatch.setattr(training, "Dealer", _malicious_dealer(n_val, every_tuple=False, targets=targets))
    # the dealer is the coordinator: it skips its own range check on the scores it opens
    monkeypatch.setattr(training, "check_validation_score", lambda epoch, brier, shared: None)
    epochs = len(targets)
    result = session.train(
        splits, VerticalLRConfig(shared_weights=False, epochs=epochs, batch_size=512, patience=epochs), seed=1
    )
    sums = np.array(result.val_brier) * n_val  # what the coordinator is shown
    r_hat = (SHIFT**2 - sums) / (2 * SHIFT)
    assert n_val < 512 and len(sums) == epochs
    assert np.array_equal((r_hat < 0).astype(int), y_val[targets])  # the labels it targeted
    assert np.all(np.abs(r_hat) < 1.1)  # and sigma(z) = r + y: each row's joint score


@pytest.mark.parametrize("every_tuple", [True, False], ids=["every-tuple", "one-tuple-per-epoch"])
def test_the_holders_catch_a_dealer_that_corrupts_tuples(monkeypatch: pytest.MonkeyPatch, every_tuple: bool) -> None:
    session, _ = _session()
    splits = Splits.random(session.n_aligned or 0, seed=1)
    n_val = len(splits.val)
    monkeypatch.setattr(training, "Dealer", _malicious_dealer(n_val + secure_lr.audit_count(n_val), every_tuple))
    # the dealer is the coordinator: its own range check is not what stops it, the holders' audit is
    monkeypatch.setattr(training, "check_validation_score", lambda epoch, brier, shared: None)
    epochs = 1 if every_tuple else 150  # one tuple a pass escapes a pass with probability ~8/9: 150 passes ~ 2e-8
    with pytest.raises(PartyError, match="party 'payments': the dealer's correlated randomness .* failed the audit"):
        session.train(
            splits,
            VerticalLRConfig(
                shared_weights=False,
                allow_gradient_label_leakage=True,
                epochs=epochs,
                batch_size=512,
                patience=epochs,
                learning_rate=0.01,
            ),
            seed=1,
        )


def test_an_honest_dealer_passes_the_audit() -> None:
    session, _ = _session()
    splits = Splits.random(session.n_aligned or 0, seed=1)
    result = session.train(splits, VerticalLRConfig(shared_weights=False, epochs=2, batch_size=64, patience=2), seed=1)
    assert result.epochs_run == 2


def test_a_dealer_that_deals_zero_masks_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Consistent but degenerate powers (a = 0) pass the audit yet would open z itself to both holders."""

    class ZeroMaskDealer(Dealer):
        def powers(self, label: str, n: int, degree: int, seeded: str) -> list[np.ndarray]:
            out = super().powers(label, n, degree, seeded)
            mine = self.stream(seeded).draw_many(label, degree, n)
            return [-m for m in mine] if label.startswith("A/") else out  # the helper's half cancels the bank's

    session, _ = _session()
    splits = Splits.random(session.n_aligned or 0, seed=1)
    monkeypatch.setattr(training, "Dealer", ZeroMaskDealer)
    with pytest.raises(PartyError, match=r"the opened delta = z - a is not masked"):
        session.train(splits, VerticalLRConfig(shared_weights=False, epochs=1, batch_size=128, patience=1), seed=1)
