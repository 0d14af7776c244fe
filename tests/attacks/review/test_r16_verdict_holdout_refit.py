"""R16-VERDICT-12 (fixed: the holdout no longer reaches the platform) leaves R16-VERDICT-4 open: a plain-FedAvg platform
whose exports, after /evaluate, are a model fitted on the labelled rows it was sent there (now a platform party's own
training rows, which it holds anyway) still passes S-BYZANTINE, since nothing ties the export to the federation."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, HoldoutLearner, evaluate, verdicts  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


@pytest.mark.xfail(strict=True, reason="R16-VERDICT-4: an export fitted centrally on rows the platform holds "
                                       "(here those sent to /evaluate) passes S-BYZANTINE; export not tied to the "
                                       "federated model")
def test_byzantine_is_not_passed_by_fitting_the_holdout_seen_in_evaluate() -> None:
    backend = HoldoutLearner()
    ev = evaluate(backend, ["F-EVALUATE", "S-BYZANTINE"])
    out = verdicts(ev)
    assert backend.seen is not None and "label" in backend.seen.columns  # labelled rows reached it (its own)
    assert out["S-BYZANTINE"][0] == "fail", out  # plain mean of every update
