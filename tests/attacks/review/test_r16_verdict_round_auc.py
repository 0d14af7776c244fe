"""R16-VERDICT-3: P-TIME-TO-AUC finds "the round the target was reached" in the platform's own per-round AUC and
then passes, even when the verifier's own measure of the final model is far below the target."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, FakeRoundAuc, evaluate, verdicts  # noqa: E402

pytestmark = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


@pytest.mark.xfail(strict=True, reason="R16-VERDICT-3: P-TIME-TO-AUC trusts the platform's self-reported per-round "
                                       "AUC; a zero model with fake round AUC 0.99 passes")
def test_time_to_auc_is_not_passed_by_fake_round_auc() -> None:
    ev = evaluate(FakeRoundAuc(), ["P-TIME-TO-AUC", "F-AUC-HORIZONTAL"], profile="quick")
    out = verdicts(ev)
    assert out["F-AUC-HORIZONTAL"][0] == "fail", out  # the verifier's own measure: the model is useless (AUC 0.5)
    assert out["P-TIME-TO-AUC"][0] == "fail", out  # so the target AUC was never reached
