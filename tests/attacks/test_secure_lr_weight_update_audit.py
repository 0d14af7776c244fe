"""Finding 22 (review R10-A2): the dealer alone must not read labels through the weight-update truncations.

On the reviewed code the weight-update truncation triples were not audited: a dealer that dealt the helper's
half of the bank intercept's triple with a chosen mask and a lying msb turned the truncation into a comparison
of the batch's residual sum against a threshold, visible in the validation score; a binary search over ~30
instances read 10 of 10 labels of rows swapped into the first batch (checked by running this attack there).
Now d + k triples are dealt per owner and batch, the owner and its co-holder assign them to weights and pick
the k to sacrifice from their pairwise PRG (the dealer can aim at no weight), the co-holder checks the sacrificed
ones, and a failed audit is sticky: every later secure-LR instance of the run is refused (persisted).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _secure_lr_coordinator import LR, session, setup, train_batch

from sampan.crypto.dealer import Dealer
from sampan.transport import PartyError
from sampan.vertical.lr_runs import LRRuns
from sampan.vertical.secure_lr import FEATURE_BITS, RESIDUAL_BITS, STEP_BITS
from sampan.vertical.session import Splits


def _comparing_dealer(theta: float) -> type[Dealer]:
    """Deals the helper's half of the bank-intercept update truncation of batch 0 with a chosen mask and a lying
    msb: truncation then adds 2^(64 - W_SHIFT) (256 on the weight) iff sum_B (sigma~(z) - y) < theta."""
    step = int(round(LR / 64 * (1 << STEP_BITS)))

    class Comparing(Dealer):
        def truncation_pair(self, label, n, shift, seeded):  # type: ignore[no-untyped-def]
            out = super().truncation_pair(label, n, shift, seeded)
            if label == "W/bank/0":
                with np.errstate(over="ignore"):
                    r = np.uint64((1 << 62) - step * int(round(theta * (1 << (FEATURE_BITS + RESIDUAL_BITS)))))
                    mine = self.stream(seeded).draw_many(label, 3, n)
                    out = [v.copy() for v in out]
                    out[0][-1] = r - mine[0][-1]
                    out[1][-1] = (r >> np.uint64(shift)) - mine[1][-1]
                    out[2][-1] = np.uint64(1) - mine[2][-1]
            return out

    return Comparing


def _lying_everywhere() -> type[Dealer]:
    """Every weight-update triple has a lying msb: whichever are sacrificed, the audit sees it."""
    class Lying(Dealer):
        def truncation_pair(self, label, n, shift, seeded):  # type: ignore[no-untyped-def]
            out = super().truncation_pair(label, n, shift, seeded)
            if label.startswith("W/"):
                out = [v.copy() for v in out]
                out[2] = out[2] + np.uint64(1)
            return out

    return Lying


def test_a_dealer_alone_cannot_read_labels_through_weight_update_truncations() -> None:
    """The reviewed attack, with the instance cap lifted so that only the audit stands in the way.

    A refused instance answers nothing (None): the dealer-coordinator sees the refusal, which says nothing about
    any label (the audit checks the sacrificed triples, drawn independently of the data). Counting a refusal as
    "did not abort" once made refusals during the last (negative) targets push the inferred y0 to 1, so targets
    whose swap changed nothing (diff 0, no information) were scored as read positives, so a run whose audit fired
    late could "read" 6 of 6 having learned nothing. Only labels inferred from answered instances count as read.
    """
    s, transport, parties = session(run_id="r10a2")
    for party in parties.values():
        party.lr.runs.max_instances = 1000
    sp = Splits.random(s.n_aligned or 0, seed=1)
    y_train = parties["bank"].data.y[parties["bank"].psi.aligned_rows][sp.train]
    pos, neg = np.flatnonzero(y_train == 1), np.flatnonzero(y_train == 0)
    train = sp.train[np.concatenate([neg[:64], pos[:8], neg[64:120]])]  # rows 64.. hold both classes to target
    val = sp.val[:64]
    y = y_train[np.concatenate([neg[:64], pos[:8], neg[64:120]])]

    def aborts(batch: np.ndarray, theta: float) -> bool | None:
        try:
            inst = setup(s, transport, train, val, lr=LR, dealer_cls=_comparing_dealer(theta))
            train_batch(transport, inst, batch)
            train_batch(transport, inst, np.setdiff1d(np.arange(128), batch))
            brier = train_batch(transport, inst, np.arange(64), validation=True) / 64
        except PartyError:  # the audit caught the dealer (then every later instance is refused): no answer
            return None
        return not 0.0 <= brier <= 1.0

    B = np.arange(64)
    lo, hi = -64.0, 64.0
    while hi - lo > 0.05:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if aborts(B, mid) else (mid, hi)
    s_b = (lo + hi) / 2
    targets = [int(j) for j in np.flatnonzero(y[64:] == 1)[:3] + 64] + \
        [int(j) for j in np.flatnonzero(y[64:] == 0)[:3] + 64]
    diffs: list[int | None] = []
    for j in targets:
        Bj = B.copy()
        Bj[0] = j
        below = aborts(Bj, s_b - 0.5)
        above = None if below is None or below else aborts(Bj, s_b + 0.5)
        diffs.append(None if below is None or (not below and above is None) else
                     (-1 if below else (0 if above else 1)))
    y0 = 1 if 1 in diffs else 0
    right = sum(int(d is not None and y0 - d == y[j]) for d, j in zip(diffs, targets, strict=False))
    assert right < len(targets), f"the dealer read every targeted label ({right} of {len(targets)}; {diffs})"


def test_a_failed_weight_update_audit_is_sticky() -> None:
    """A dealer whose weight-update triples are inconsistent is caught at the first update; the run then refuses
    every later instance, even an honest one."""
    s, transport, parties = session(run_id="r10a2-sticky")
    sp = Splits.random(s.n_aligned or 0, seed=1)
    inst = setup(s, transport, sp.train[:256], sp.val[:128], dealer_cls=_lying_everywhere())
    train_batch(transport, inst, np.arange(128))
    with pytest.raises(PartyError, match="weight-update truncation triples .* failed the audit"):
        train_batch(transport, inst, np.arange(128, 256))
    with pytest.raises(PartyError, match="failed an audit earlier in this run"):
        setup(s, transport, sp.train[:256], sp.val[:128])


def test_a_failed_audit_survives_a_restart(tmp_path: Path) -> None:
    """Deployed parties persist the record (`<state_dir>/vertical-lr`): a restarted party still refuses the run."""
    LRRuns("bank", tmp_path).fail("run-1", "the dealer's triples failed the audit")
    restarted = LRRuns("bank", tmp_path)
    with pytest.raises(ValueError, match="failed an audit earlier in this run"):
        restarted.admit("run-1", "f" * 32, b"\0" * 32)
    restarted.admit("run-2", "f" * 32, b"\0" * 32)  # another run is not affected
