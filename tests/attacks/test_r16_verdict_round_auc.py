"""R16-VERDICT-3: P-TIME-TO-AUC finds "the round the target was reached" in the platform's own per-round AUC and
then passes, even when the verifier's own measure of the final model is far below the target. Fixed: any pass needs
the verifier's AUC of the final model >= target; the platform's per-round AUC only times it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, FakeRoundAuc, evaluate, verdicts  # noqa: E402

pytestmark = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


def test_time_to_auc_is_not_passed_by_fake_round_auc() -> None:
    ev = evaluate(FakeRoundAuc(), ["P-TIME-TO-AUC", "F-AUC-HORIZONTAL"], profile="quick")
    out = verdicts(ev)
    assert out["F-AUC-HORIZONTAL"][0] == "fail", out  # the verifier's own measure: the model is useless (AUC 0.5)
    assert out["P-TIME-TO-AUC"][0] == "fail", out  # so the target AUC was never reached
