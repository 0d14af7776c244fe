"""R16B-7: the canary job of S-MIA / S-DP-AUDIT-ONE-RUN hides which of its columns are canaries (R16-VERDICT-2), but
the job itself is like no other job of the catalogue: about 500 features, every one named attr_<6 hex> (every other
job has the drawn ~30 columns under their own names). A platform that claims DP and adds the noise only in a job of
that shape (here: Gaussian noise on the published models' raw-scale coefficients, all columns alike, so the canary
trace sees the verifier's share) passes both audits, while every other job, DP requested or not (P-PRIVACY-COST's DP
job included), trains in the clear. `canaries.py` says "so the task looks like any other"; it does not."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, evaluate, verdicts  # noqa: E402
from _r16b_fakes import DpOnlyWhenAudited, canary_shaped  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


@pytest.mark.xfail(strict=True, reason="R16B-7: the canary job is recognisable as a job; DP only there passes the "
                   "privacy audits")
def test_dp_added_only_in_the_canary_shaped_job_does_not_pass() -> None:
    platform = DpOnlyWhenAudited()
    out = verdicts(evaluate(platform, ["S-MIA", "S-DP-AUDIT-ONE-RUN", "P-PRIVACY-COST"], seed=16))
    # the cheat is real: the other DP job of the evaluation was not canary-shaped, so it got no noise
    dp_jobs = [s for s in platform.specs if s.dp is not None]
    assert any(canary_shaped(s) for s in dp_jobs) and any(not canary_shaped(s) for s in dp_jobs), platform.specs
    assert out["S-DP-AUDIT-ONE-RUN"][0] == "fail" or out["S-MIA"][0] == "fail", out
