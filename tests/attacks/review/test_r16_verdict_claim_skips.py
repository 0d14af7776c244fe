"""R16-VERDICT-7: a claimed protection can be turned into `skip` ("not applicable") instead of being tested: a
platform that claims DP in /info but leaves "dp" out of its capabilities skips S-DP-AUDIT-ONE-RUN; a platform that
claims mTLS but answers the TLS probe's registration with no address skips S-TLS-NO-CLIENT-CERT; a platform that
claims secure aggregation but names no party kit skips S-SECAGG-MASKED (and every other kit test). `skip` reads as
harmless in the report and in the project's own "pass or skip" acceptance."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, DpWithoutCapability, NamedTestDodger, NoKit, evaluate, verdicts  # noqa: E402

pytestmark = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


@pytest.mark.xfail(strict=True, reason="R16-VERDICT-7: a DP claim without the 'dp' capability makes the DP audit "
                                       "skip instead of fail")
def test_a_dp_claim_is_audited_or_failed_never_skipped() -> None:
    ev = evaluate(DpWithoutCapability(), ["S-DP-AUDIT-ONE-RUN"])
    verdict, message = verdicts(ev)["S-DP-AUDIT-ONE-RUN"]
    assert ev.target.claims.get("dp"), "the platform claims DP"
    assert verdict == "fail", (verdict, message)  # a claim that cannot be audited is not met


@pytest.mark.xfail(strict=True, reason="R16-VERDICT-7: a platform claiming mTLS gives the TLS probe no address and "
                                       "S-TLS-NO-CLIENT-CERT is skip")
def test_a_claimed_mtls_link_cannot_be_withheld_from_the_probe() -> None:
    backend = NamedTestDodger()
    backend.no_address = True
    ev = evaluate(backend, ["S-TLS-NO-CLIENT-CERT"], profile="quick")
    verdict, message = verdicts(ev)["S-TLS-NO-CLIENT-CERT"]
    assert ev.target.claims.get("mtls")
    assert verdict == "fail", (verdict, message)


@pytest.mark.xfail(strict=True, reason="R16-VERDICT-7: a platform claiming secure aggregation that names no party kit "
                                       "gets S-SECAGG-MASKED skip")
def test_a_secure_aggregation_claim_is_not_skipped_by_naming_no_kit() -> None:
    ev = evaluate(NoKit(), ["S-SECAGG-MASKED"], profile="quick")
    verdict, message = verdicts(ev)["S-SECAGG-MASKED"]
    assert ev.target.claims.get("secure_aggregation")
    assert verdict == "fail", (verdict, message)  # claimed, and nothing shows it: not met
