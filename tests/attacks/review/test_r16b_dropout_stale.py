"""R16B-6: F-DROPOUT-RESUME (R16-VERDICT-10) judges what the verifier's leaving party saw, but a platform that never
drops it passes: it takes the dropout notice out of the job, files the party's last update (round 2) again for every
later round, and its plain aggregator (which waits for every party) averages that stale update to the end. The
message says "the job went on without it" while the platform's own round reports list the party in rounds 3-6
(recorded, not judged). The notice itself is the other half: the weak platform, whose aggregator waits for every
party the notice does not name until `timeout_s`, passes only because it is told in advance who leaves."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, evaluate, verdicts  # noqa: E402
from _r16b_fakes import StaleDropout  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


@pytest.mark.xfail(strict=True, reason="R16B-6: a platform that keeps averaging the departed party's cached update "
                   "passes F-DROPOUT-RESUME")
def test_a_departed_partys_stale_update_reused_to_the_end_does_not_pass() -> None:
    verdict, message = verdicts(evaluate(StaleDropout(), ["F-DROPOUT-RESUME"], seed=16))["F-DROPOUT-RESUME"]
    # the party never left the aggregate: the job did not go on without it
    assert verdict == "fail", message
