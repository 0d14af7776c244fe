"""R16B-4 (fixed): `canary_trace` (R16-VERDICT-2) counted the verifier's canary change as left out only when the next
global model's canary coordinate equals the common term to within 1e-9 of the change: an exact-equality test. A
platform with no DP that freezes the canary columns (all zeros at every party it holds) as `CanaryFreezer` does, but
puts a fresh 1e-6 jitter on them in each published model, passes the trace ("carried"), ties its export, and passes
S-MIA and S-DP-AUDIT-ONE-RUN while claiming epsilon = 1. The docs' open case is noise added on top of the party's
share; here the share is gone, which the docs say fails ("frozen weights ... both tests fail").

Fixed: the trace now regresses g' - g on v - g over the moved canary coordinates within each round (the common term
drops out) and demands the party's share (row share, or 1 / parties if smaller) to at least `canary_share_min`, one-
sided at `canary_share_z` standard errors; the jitter leaves a slope near 0 and both audits fail."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT / R16B fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, evaluate, verdicts  # noqa: E402
from _r16b_fakes import CanaryJitter  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


def test_frozen_canaries_with_a_tiny_jitter_do_not_pass() -> None:
    out = verdicts(evaluate(CanaryJitter(), ["S-MIA", "S-DP-AUDIT-ONE-RUN"], seed=16))
    # no noise anywhere and the verifier's canary change never reaches a global model: neither may pass
    assert out["S-DP-AUDIT-ONE-RUN"][0] == "fail", out
    assert out["S-MIA"][0] == "fail", out
    assert "share" in out["S-MIA"][1], out  # failed by the trace, not by the audit's own statistics
