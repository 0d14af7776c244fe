"""R17-PORTAL-9: a vendor ticks every claim and its platform's /info makes the claimed tests "not applicable", so no
claim is ever contradicted.

Attack (the evaluated platform, lying by omission): the questionnaire says "we pass S-MIA / S-SECAGG-MASKED /
S-TLS-*". The platform's GET /info then leaves out the matching capability or claim (no "dp", no
"secure_aggregation", no "mtls"): the catalogue skips those tests as not applicable (the verifier's R16-VERDICT-7
rule only fails a protection claimed in /info, not one claimed in the portal's questionnaire), and
`compare_claims` marks a claimed test that was RUN in this profile and skipped exactly like one the profile never
runs: "not tested". The online report and the claims summary thus show no contradiction for a platform that, by
its own answers, lacks what the vendor claimed; the vendor's marketing copy "no contradicted claims" holds.

Fixed when: a questionnaire claim whose test ran and was skipped as not applicable (an outcome with verdict "skip")
is marked against the vendor (e.g. "contradicted", or a distinct "claimed but not shown" status that the summary
counts with the contradictions), while a claimed test the profile does not run stays "not tested".
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "verify"))

from _report_fixtures import synthetic  # noqa: E402

from sampan.web.portal.claims import compare_claims  # noqa: E402


@pytest.mark.xfail(strict=True, reason="R17-PORTAL-9: a claimed test the platform made not applicable is marked "
                                       "'not tested', never against the vendor")
def test_a_claimed_test_skipped_as_not_applicable_is_not_a_neutral_not_tested() -> None:
    evaluation = synthetic("weak")  # S-MIA ran and was skipped: "capability dp absent" (the platform's /info)
    mia = next(o for o in evaluation.outcomes if o.id == "S-MIA")
    assert mia.verdict == "skip"
    checks = {c.test_id: c for c in compare_claims({"S-MIA": True, "S-DP-AUDIT-ONE-RUN": True}, evaluation)}
    assert checks["S-DP-AUDIT-ONE-RUN"].status == "not tested"  # not in this evaluation at all: neutral is right
    assert checks["S-MIA"].status not in ("not tested", "confirmed"), checks["S-MIA"]
