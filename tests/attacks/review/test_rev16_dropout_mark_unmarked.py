"""REV16-3: F-DROPOUT-RESUME's mark goes on the kit's ``LEAVE_AFTER``-th update *call*, not on the last update the
party sends before it leaves, and a mark that never went on is "not checked", which fails nothing. `StaleSkipFirst`
never drops the verifier's party (its round-2 update is filed again in rounds 3-6: `StaleDropout`, which the mark
catches at 0.67) and hides round 1 from it (a no-op update filed in its name), so the party sends one update, in
round 2, unmarked: the job passes.

The secure outcome asserted: fail (a stale update re-filed in every later round). One way there: mark the update the
party sends in its last round before leaving (the hook gets the round), and make an unmarked job a failure (or an
error) when the party sent any update.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the R16-VERDICT / R16B / REV16 fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, evaluate  # noqa: E402
from _rev16_fakes import StaleSkipFirst  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


@pytest.mark.xfail(strict=True, reason="REV16-3: a party shown only round 2 sends one update; the mark waits for "
                   "the second update call, so a re-filed stale update is never measured")
def test_a_stale_update_refiled_after_a_hidden_first_round_fails() -> None:
    out = {o.id: o for o in evaluate(StaleSkipFirst(), ["F-DROPOUT-RESUME"], seed=16).outcomes}
    dropout = out["F-DROPOUT-RESUME"]
    print(dropout.verdict, dropout.message, dropout.evidence.get("party_update_rounds"),
          (dropout.evidence.get("mark") or {}).get("status"))
    assert dropout.verdict == "fail", dropout.message
