"""R16B-1: the export tie (R16-VERDICT-4) compares the export with the last model the verifier's party received, but
nothing asks whether that final model follows from the rounds' updates. A platform whose federation learns nothing
(learning rate 0: every round's global model is zero) publishes a central fit as its final model after the last
round, exports the same fit, and F-AUC-HORIZONTAL, F-PREDICT and F-EVALUATE pass with the tie "match".

Fixed in `sampan.verify.catalogue.final_step` (called by the export tie): on the verifier's party's own rows the final
model's AUC may not exceed the best model of the rounds the party took part in (the global models it received, the
models it sent) by more than `final_auc_jump_max`; the swapped central fit jumps from 0.5 to about 0.74, the tie is
a mismatch and all three tests fail."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT / R16B fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, evaluate, verdicts  # noqa: E402
from _r16b_fakes import FinalSwap  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


def test_a_central_fit_published_as_the_final_model_does_not_pass() -> None:
    out = verdicts(evaluate(FinalSwap(), ["F-AUC-HORIZONTAL", "F-PREDICT", "F-EVALUATE"], profile="quick", seed=16))
    # every round's global model the verifier's party received was zero: the federation trained nothing
    for test in ("F-AUC-HORIZONTAL", "F-PREDICT", "F-EVALUATE"):
        assert out[test][0] == "fail", out
