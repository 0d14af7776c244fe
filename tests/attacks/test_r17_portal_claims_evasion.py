"""R17-PORTAL-9: a vendor ticks every claim and its platform's /info makes the claimed tests "not applicable", so no
claim is ever contradicted.

Attack (the evaluated platform, lying by omission): the questionnaire says "we pass S-MIA / S-SECAGG-MASKED /
S-TLS-*". The platform's GET /info then leaves out the matching capability or claim (no "dp", no
"secure_aggregation", no "mtls"): the catalogue skips those tests as not applicable (the verifier's R16-VERDICT-7
rule only fails a protection claimed in /info, not one claimed in the portal's questionnaire), and
`compare_claims` marks a claimed test that was RUN in this profile and skipped exactly like one the profile never
runs: "not tested". The online report and the claims summary thus show no contradiction for a platform that, by
its own answers, lacks what the vendor claimed; the vendor's marketing copy "no contradicted claims" holds.

FIXED: `compare_claims` marks a claimed test that ran and was skipped as not applicable "contradicted: not shown"
(with the skip's reason in `ClaimCheck.note`, shown in the claims table and the reports; `is_contradiction`
counts it with "contradicted"), while a claimed test the profile does not run stays "not tested".
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verify"))

from _report_fixtures import synthetic  # noqa: E402

from sampan.web.portal.claims import compare_claims, is_contradiction  # noqa: E402


def test_a_claimed_test_skipped_as_not_applicable_is_not_a_neutral_not_tested() -> None:
    evaluation = synthetic("weak")  # S-MIA ran and was skipped: "capability dp absent" (the platform's /info)
    mia = next(o for o in evaluation.outcomes if o.id == "S-MIA")
    assert mia.verdict == "skip"
    checks = {c.test_id: c for c in compare_claims({"S-MIA": True, "S-DP-AUDIT-ONE-RUN": True}, evaluation)}
    assert checks["S-DP-AUDIT-ONE-RUN"].status == "not tested"  # not in this evaluation at all: neutral is right
    assert checks["S-MIA"].status not in ("not tested", "confirmed"), checks["S-MIA"]
    assert is_contradiction(checks["S-MIA"].status) and "dp absent" in checks["S-MIA"].note
