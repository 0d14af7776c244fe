"""R16-VERDICT-10: F-DROPOUT-RESUME learns that the party left only from the platform's own per-round party lists
(all four parties are platform-operated). A platform that never drops the party but edits its round reports passes."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, DropoutIgnored, evaluate, verdicts  # noqa: E402

pytestmark = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


@pytest.mark.xfail(strict=True, reason="R16-VERDICT-10: dropout is judged on the platform's self-reported round "
                                       "parties; ignoring the dropout and editing the report passes")
def test_dropout_is_not_passed_by_editing_the_round_reports() -> None:
    ev = evaluate(DropoutIgnored(), ["F-DROPOUT-RESUME"])
    verdict, message = verdicts(ev)["F-DROPOUT-RESUME"]
    assert verdict == "fail", message  # the party never left
