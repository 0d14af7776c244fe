"""Review (issue 13) of the drift release's write-ahead charge (`sampan.runtime.monitoring.charge_party`).

R13-DR-2: the party's ledger FILE is read, checked, recorded and rewritten with no lock (contrast
`PartyPrivacyPolicy`, which holds its ledger under a lock in one process). Two `sampan monitor drift --noise`
invocations at the bank on one ledger (one per served model, from a scheduler) that overlap both read the same
spent budget, both release, and the second write erases the first charge: two Gaussian releases left the bank,
the ledger holds one. Here the overlap is made certain by slowing `Ledger.check` (a busy machine).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sampan.privacy.ledger import Ledger
from sampan.privacy.ledger.book import Ledger as BookLedger
from sampan.runtime.monitoring import DriftReference, drift_release


def test_two_overlapping_drift_releases_are_both_charged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = tmp_path / "bank_0.ledger.json"
    check = BookLedger.check

    def slow_check(self: BookLedger, events: object) -> None:
        time.sleep(0.3)  # both releases have read the file before either writes it
        check(self, events)  # type: ignore[arg-type]

    monkeypatch.setattr(BookLedger, "check", slow_check)
    reference = DriftReference((0.2, 0.5), {})

    def release() -> None:
        drift_release("bank_0", reference, reference_scores=np.full(30, 0.3), current_scores=np.full(30, 0.6),
                      noise_multiplier=2.0, ledger_path=ledger)

    threads = [threading.Thread(target=release) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(Ledger.from_json(ledger.read_text()).events) == 2  # two releases left: two charges
