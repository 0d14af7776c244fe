"""R16-VERDICT-8: against Sampan in its default (in-process) mode the "verifier's party" is run by the platform's own
backend, which also calls the verifier's tap (sampan_kit: the backend "takes the seat, runs that party's real Sampan
code ... and calls the tap"). S-SECAGG-MASKED then passed on messages the platform reported about itself, not on
what the verifier's party sent, and the outcome did not say so (only the wire tests said "in-process").

Fixed: `dataplane.qualify_self_reported` marks every outcome whose party-side evidence came from an in-process kit
(S-SECAGG-MASKED, S-GRAD-INVERSION, S-PSI-LEAK, F-DROPOUT-RESUME): the message says "self-reported" and the evidence
carries ``evidence_source`` (self-reported vs verifier-observed on the wire) and ``party_in_process``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, TOKEN, verdicts  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


def test_a_pass_resting_on_the_platforms_own_tap_says_so(tmp_path: Path) -> None:
    from sampan.verify.runner import Target, run_evaluation
    from sampan.verify.serve_local import serve_app
    from sampan.verify.server import make_benchmark_app
    from sampan.web.bench_api import SampanBackend

    backend = SampanBackend(tmp_path / "platform")
    try:
        with serve_app(make_benchmark_app(backend, token=TOKEN)) as server:
            ev = run_evaluation(Target(server.url, TOKEN), "quick", only=["S-SECAGG-MASKED"], data_dir=SHARED)
    finally:
        backend.close()
    outcome = next(o for o in ev.outcomes if o.id == "S-SECAGG-MASKED")
    assert outcome.verdict in ("pass", "fail"), verdicts(ev)
    said = (outcome.message + " " + json.dumps(outcome.evidence, default=str)).lower()
    assert any(w in said for w in ("in-process", "in process", "platform's process", "self-reported")), \
        outcome.message
    assert "self-reported" in outcome.message  # in the message itself, which every report shows
    assert outcome.evidence["party_in_process"] is True
    assert outcome.evidence["evidence_source"].startswith("self-reported")
