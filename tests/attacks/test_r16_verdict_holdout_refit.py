"""R16-VERDICT-12 (fixed: the holdout no longer reaches the platform) leaves R16-VERDICT-4 open: a plain-FedAvg platform
whose exports, after /evaluate, are a model fitted on the labelled rows it was sent there (now a platform party's own
training rows, which it holds anyway) still passes S-BYZANTINE, since nothing ties the export to the federation.

Fixed by R16-VERDICT-4's export tie (`sampan.verify.catalogue.export_tie`): the export of each Byzantine job must be
the final global model the verifier's party received; a refit is not, and S-BYZANTINE fails naming the job."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, HoldoutLearner, evaluate, verdicts  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


def test_byzantine_is_not_passed_by_fitting_the_holdout_seen_in_evaluate() -> None:
    backend = HoldoutLearner()
    ev = evaluate(backend, ["F-EVALUATE", "S-BYZANTINE"])
    out = verdicts(ev)
    assert backend.seen is not None and "label" in backend.seen.columns  # labelled rows reached it (its own)
    assert out["S-BYZANTINE"][0] == "fail", out  # plain mean of every update
    assert "not the final global model" in out["S-BYZANTINE"][1], out  # and its exports are refits
