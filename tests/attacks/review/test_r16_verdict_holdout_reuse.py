"""R16-VERDICT-12: F-EVALUATE posts the verifier's holdout *with its labels* to the platform, and later tests judge
on that same holdout (S-BYZANTINE's and S-BACKDOOR's AUC, the noniid/dropout floors). A platform with plain FedAvg
that exports, for every later job, a model fitted on those labelled rows survives the Byzantine party: the
"attacked" AUC is in-sample."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, HoldoutLearner, evaluate, verdicts  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


@pytest.mark.xfail(strict=True, reason="R16-VERDICT-12: the holdout's labels reach the platform through /evaluate "
                                       "before the tests that judge on it; a holdout-fitted export passes S-BYZANTINE")
def test_byzantine_is_not_passed_by_fitting_the_holdout_seen_in_evaluate() -> None:
    backend = HoldoutLearner()
    ev = evaluate(backend, ["F-EVALUATE", "S-BYZANTINE"])
    out = verdicts(ev)
    assert backend.seen is not None and "label" in backend.seen.columns  # the labelled holdout reached it
    assert out["S-BYZANTINE"][0] == "fail", out  # plain mean of every update
