"""R16-VERDICT-2: the canary columns of S-MIA / S-DP-AUDIT-ONE-RUN are recognisable: they are all zeros in every
party the platform holds (and named attr_<6 hex>, unlike the drawn columns). A platform with no DP at all that keeps
those columns' weights at their start passes both privacy tests while its real columns train in the clear."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, CanaryFreezer, evaluate, verdicts  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


@pytest.mark.xfail(strict=True, reason="R16-VERDICT-2: canary columns are detectable (all-zero at the platform's "
                                       "parties); freezing them passes S-MIA and the DP audit without DP")
def test_dp_audit_is_not_passed_by_freezing_canary_like_columns() -> None:
    ev = evaluate(CanaryFreezer(), ["S-MIA", "S-DP-AUDIT-ONE-RUN"])
    out = verdicts(ev)
    # the platform claims epsilon = 1 and adds no noise: both must refute the claim
    assert out["S-DP-AUDIT-ONE-RUN"][0] == "fail", out
    assert out["S-MIA"][0] == "fail", out
