"""R16B-4: `canary_trace` (R16-VERDICT-2) counts the verifier's canary change as left out only when the next global
model's canary coordinate equals the common term to within 1e-9 of the change: an exact-equality test. A platform
with no DP that freezes the canary columns (all zeros at every party it holds) as `CanaryFreezer` does, but puts a
fresh 1e-6 jitter on them in each published model, passes the trace ("carried"), ties its export, and passes S-MIA
and S-DP-AUDIT-ONE-RUN while claiming epsilon = 1. The docs' open case is noise added on top of the party's share;
here the share is gone, which the docs say fails ("frozen weights ... both tests fail")."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, evaluate, verdicts  # noqa: E402
from _r16b_fakes import CanaryJitter  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


@pytest.mark.xfail(strict=True, reason="R16B-4: frozen canary columns with a 1e-6 jitter pass canary_trace and both "
                   "privacy audits")
def test_frozen_canaries_with_a_tiny_jitter_do_not_pass() -> None:
    out = verdicts(evaluate(CanaryJitter(), ["S-MIA", "S-DP-AUDIT-ONE-RUN"], seed=16))
    # no noise anywhere and the verifier's canary change never reaches a global model: neither may pass
    assert out["S-DP-AUDIT-ONE-RUN"][0] == "fail", out
    assert out["S-MIA"][0] == "fail", out
