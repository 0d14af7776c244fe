"""R16B-5: with an in-process kit (Sampan's default mode) the export tie (R16-VERDICT-4), the canary trace
(R16-VERDICT-2) and the Byzantine/backdoor attack itself (the verifier's hook is called by the platform's process,
which then sends what it likes) rest on what the platform's process reports about itself. Only S-SECAGG-MASKED,
S-GRAD-INVERSION, S-PSI-LEAK and F-DROPOUT-RESUME say "self-reported" (`qualify_self_reported`); F-AUC-HORIZONTAL,
S-MIA and S-BYZANTINE pass with the tie "match" / trace "carried" and no qualifier in the message or evidence, which
`sampan_kit`'s docstring says cannot happen ("the catalogue says so in every outcome that rests on it").

Fixed: every export-tie record carries `evidence_source` and `party_in_process` (`export_tie._provenance`), and the
runner qualifies each outcome whose integrity checks were made on an in-process tap (`runner._with_checks` ->
`dataplane.qualify_self_reported`); the tie is made in every test that judges an export, the canary job's and the
robust jobs' (attack hook) included."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT / R16B fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


def test_in_process_tie_trace_and_attack_are_labelled_self_reported(tmp_path: Path) -> None:
    from sampan.verify.runner import Target, run_evaluation
    from sampan.verify.serve_local import serve_app
    from sampan.verify.server import make_benchmark_app
    from sampan.web.bench_api import SampanBackend

    backend = SampanBackend(tmp_path / "platform")
    try:
        with serve_app(make_benchmark_app(backend, token="s" * 32)) as server:
            ev = run_evaluation(Target(server.url, "s" * 32), "standard", data_dir=SHARED, seed=16,
                                only=["F-AUC-HORIZONTAL", "S-MIA", "S-BYZANTINE"])
    finally:
        backend.close()
    for outcome in ev.outcomes:
        assert outcome.verdict == "pass", (outcome.id, outcome.message)  # the honest platform passes
        assert "self-reported" in outcome.message, (outcome.id, outcome.message)
        assert str(outcome.evidence.get("evidence_source", "")).startswith("self-reported"), outcome.evidence
