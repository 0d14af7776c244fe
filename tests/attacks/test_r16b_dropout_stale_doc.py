"""R16B-6 (documented, not fixed): F-DROPOUT-RESUME (R16-VERDICT-10) judges what the verifier's leaving party saw,
but a platform that never drops it passes: it takes the dropout notice out of the job, files the party's last update
(round 2) again for every later round, and its plain aggregator (which waits for every party) averages that stale
update to the end. The message says "the job went on without it" while the platform's own round reports list the
party in rounds 3-6 (recorded, not judged). The notice itself is the other half: the weak platform, whose aggregator
waits for every party the notice does not name until `timeout_s`, passes only because it is told in advance who
leaves. The party sees no model after it left, so no check of its own can see what later rounds aggregate; a sound
fix (a mark on its last update, carried once by the final model) needs every kit changed. catalogue.md states both
limits; the platform test shows the cheat still passes (when it fails, the limit is fixed: update the docs)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT / R16B fakes

DOC = Path(__file__).resolve().parents[2] / "docs" / "verification" / "catalogue.md"


def test_catalogue_states_the_stale_update_and_announced_dropout_limits() -> None:
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    section = text[text.index("Limits (R16B-6"):]
    assert re.search(r"cannot tell a real dropout from a platform that never drops the party", section), section[:400]
    assert re.search(r"files the party's last \(round-2\) update again in every later round", section)
    assert re.search(r"Only an announced dropout is tested", section)
    assert "test_r16b_dropout_stale_doc.py" in section


@pytest.mark.slow
def test_a_departed_partys_stale_update_reused_to_the_end_still_passes() -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    from _r16_verdict_fakes import SHARED, evaluate, verdicts
    from _r16b_fakes import StaleDropout

    if not (SHARED / "german_credit").is_dir():
        pytest.skip("shared datasets not found")
    verdict, message = verdicts(evaluate(StaleDropout(), ["F-DROPOUT-RESUME"], seed=16))["F-DROPOUT-RESUME"]
    # the documented limit: the party never left the aggregate, yet the test passes
    assert verdict == "pass", message
    assert "went on without it" in message, message
