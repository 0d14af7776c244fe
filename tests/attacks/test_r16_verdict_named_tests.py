"""R16-VERDICT-1: the verifier names each project after its test ("tls-none-…", "byz-sign_flip-…",
"backdoor-…", "canaries-…", "inversion-…"), and the platform reads the name in POST /projects. A platform that
checks no client certificate and averages any update passes S-TLS-NO-CLIENT-CERT and S-BYZANTINE by behaving well
only in the projects whose name gives the test away. Fixed: project names are random hex (`jobs.new_project`); the
job shapes and `operated_by` still tell a probe apart (documented, not fixed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, NamedTestDodger, evaluate, verdicts  # noqa: E402

pytestmark = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


TEST_WORDS = ("tls", "byz", "backdoor", "canar", "inversion", "replay", "malformed", "aggregation", "quick", "perf",
              "dropout", "noniid", "access", "lifecycle", "registration", "vertical")


def _no_test_word(names: list[str]) -> None:
    assert names, "no project was created"
    for name in names:
        assert not any(w in name.lower() for w in TEST_WORDS), name
        assert all(c in "0123456789abcdef" for c in name), name


def test_tls_probe_cannot_be_dodged_by_reading_the_project_name() -> None:
    backend = NamedTestDodger()
    ev = evaluate(backend, ["S-TLS-NO-CLIENT-CERT"], profile="quick")
    _no_test_word(list(backend.names.values()))  # the give-away the dodger used is gone
    verdict, message = verdicts(ev)["S-TLS-NO-CLIENT-CERT"]
    assert verdict == "fail", message  # it never asks for a client certificate


@pytest.mark.slow
def test_byzantine_cannot_be_dodged_by_reading_the_project_name() -> None:
    backend = NamedTestDodger()
    ev = evaluate(backend, ["S-BYZANTINE"])
    _no_test_word(list(backend.names.values()))
    verdict, message = verdicts(ev)["S-BYZANTINE"]
    assert verdict == "fail", message  # plain mean of every update, no robust rule anywhere
