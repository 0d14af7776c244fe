"""R16-VERDICT-7: a claimed protection can be turned into `skip` ("not applicable") instead of being tested: a
platform that claims DP in /info but leaves "dp" out of its capabilities skips S-DP-AUDIT-ONE-RUN; a platform that
claims mTLS but answers the TLS probe's registration with no address skips S-TLS-NO-CLIENT-CERT; a platform that
claims secure aggregation but names no party kit skips S-SECAGG-MASKED (and every other kit test). `skip` reads as
harmless in the report and in the project's own "pass or skip" acceptance. Fixed in `runner.run_test`: a test whose
claim the platform makes ends "fail" ("claimed but not verifiable") wherever it would have been "skip"."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, DpWithoutCapability, NoKit, Recording, evaluate, verdicts  # noqa: E402

pytestmark = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


class WithheldAddress(Recording):
    """Claims mTLS but answers every verifier-party registration with no address ("in-process")."""

    def register_party(self, project_id: str, registration: Any) -> Any:
        party = super().register_party(project_id, registration)
        if registration.operated_by == "verifier":
            return party.model_copy(update={"connect": None})
        return party


def test_a_dp_claim_is_audited_or_failed_never_skipped() -> None:
    ev = evaluate(DpWithoutCapability(), ["S-DP-AUDIT-ONE-RUN"])
    verdict, message = verdicts(ev)["S-DP-AUDIT-ONE-RUN"]
    assert ev.target.claims.get("dp"), "the platform claims DP"
    assert verdict == "fail", (verdict, message)  # a claim that cannot be audited is not met


def test_a_claimed_mtls_link_cannot_be_withheld_from_the_probe() -> None:
    backend = WithheldAddress()
    ev = evaluate(backend, ["S-TLS-NO-CLIENT-CERT"], profile="quick")
    verdict, message = verdicts(ev)["S-TLS-NO-CLIENT-CERT"]
    assert ev.target.claims.get("mtls")
    assert verdict == "fail", (verdict, message)


def test_a_secure_aggregation_claim_is_not_skipped_by_naming_no_kit() -> None:
    ev = evaluate(NoKit(), ["S-SECAGG-MASKED"], profile="quick")
    verdict, message = verdicts(ev)["S-SECAGG-MASKED"]
    assert ev.target.claims.get("secure_aggregation")
    assert verdict == "fail", (verdict, message)  # claimed, and nothing shows it: not met
