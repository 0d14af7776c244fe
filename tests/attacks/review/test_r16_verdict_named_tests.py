"""R16-VERDICT-1: the verifier names each project after its test ("tls-none-…", "byz-sign_flip-…",
"backdoor-…", "canaries-…", "inversion-…"), and the platform reads the name in POST /projects. A platform that
checks no client certificate and averages any update passes S-TLS-NO-CLIENT-CERT and S-BYZANTINE by behaving well
only in the projects whose name gives the test away."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, NamedTestDodger, evaluate, verdicts  # noqa: E402

pytestmark = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


@pytest.mark.xfail(strict=True, reason="R16-VERDICT-1: project names reveal the TLS probe; a platform that checks "
                                       "no client certificate dodges it and passes")
def test_tls_probe_cannot_be_dodged_by_reading_the_project_name() -> None:
    backend = NamedTestDodger()
    ev = evaluate(backend, ["S-TLS-NO-CLIENT-CERT"], profile="quick")
    assert any(n.startswith("tls-") for n in backend.names.values())  # the give-away the dodger used
    verdict, message = verdicts(ev)["S-TLS-NO-CLIENT-CERT"]
    assert verdict == "fail", message  # it never asks for a client certificate


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="R16-VERDICT-1: project names reveal the Byzantine jobs; plain FedAvg that "
                                       "drops the verifier's update only there passes S-BYZANTINE")
def test_byzantine_cannot_be_dodged_by_reading_the_project_name() -> None:
    backend = NamedTestDodger()
    ev = evaluate(backend, ["S-BYZANTINE"])
    verdict, message = verdicts(ev)["S-BYZANTINE"]
    assert verdict == "fail", message  # plain mean of every update, no robust rule anywhere
