"""R16B-6: F-DROPOUT-RESUME (R16-VERDICT-10) judged what the verifier's leaving party saw, but a platform that never
drops it passed: it takes the dropout notice out of the job, files the party's last update (round 2) again for every
later round, and its plain aggregator (which waits for every party) averages that stale update to the end.

Fixed (`catalogue.dropout_mark`): the party's last update carries a mark along the quietest direction of the job's
columns; an honest mean carries it once (the party's share, 0.20), the stale platform 0.67 (1 - 0.8^5), and the test
fails above 2 x the share. What remains (re-filed in only one or two later rounds, an earlier update re-filed, the
mark removed; only an announced dropout tested) is stated in catalogue.md; test_r16b6_dropout_mark.py asserts the
one-round limit and the honest controls."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT / R16B fakes

DOC = Path(__file__).resolve().parents[2] / "docs" / "verification" / "catalogue.md"


def test_catalogue_states_the_mark_and_what_it_leaves() -> None:
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    section = text[text.index("Limits (R16B-6"):][:4000]
    assert re.search(r"files the party's last \(round-2\) update again in every later round", section), section[:400]
    assert "dropout_mark_repeat_max" in section and "test_r16b_dropout_stale_doc.py" in section
    assert re.search(r"only one or two later rounds", section), section
    assert re.search(r"Only an announced dropout is tested", section)


@pytest.mark.slow
def test_a_departed_partys_stale_update_reused_to_the_end_fails() -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    from _r16_verdict_fakes import SHARED, evaluate, verdicts
    from _r16b_fakes import StaleDropout

    if not (SHARED / "german_credit").is_dir():
        pytest.skip("shared datasets not found")
    ev = evaluate(StaleDropout(), ["F-DROPOUT-RESUME"], seed=16)
    verdict, message = verdicts(ev)["F-DROPOUT-RESUME"]
    assert verdict == "fail", message
    mark = ev.outcomes[0].evidence["mark"]
    assert mark["status"] == "repeated" and mark["carried"] > 2 * mark["share"], mark
    assert "counted again after the party left" in message, message
