"""The claims comparison rule, case by case, on the report tests' synthetic evaluation."""

from __future__ import annotations

from _core_fixtures import synthetic

from sampan.web.portal.claims import STATUSES, catalogue_titles, compare_claims, is_contradiction


def test_each_mark() -> None:
    ev = synthetic(verdicts={"F-AUC-HORIZONTAL": "fail"})
    claims = {"F-API-VERSION": True, "F-AUC-HORIZONTAL": True, "S-TLS-WRONG-CA": True, "S-MIA": True,
              "F-PSI-EXACT": True, "P-BYTES-PER-ROUND": False}
    checks = compare_claims(claims, ev)
    by_id = {c.test_id: c for c in checks}
    assert by_id["F-API-VERSION"].status == "confirmed" and by_id["F-API-VERSION"].measured == "pass"
    assert by_id["F-AUC-HORIZONTAL"].status == "contradicted"  # claimed, failed
    assert by_id["S-TLS-WRONG-CA"].status == "contradicted"  # claimed, error: the claim is not supported
    mia = by_id["S-MIA"]  # claimed, ran, skipped as not applicable (R17-PORTAL-9): a mark against the vendor
    assert mia.status == "contradicted: not shown" and mia.note == "capability dp absent" and mia.measured == "skip"
    psi = by_id["F-PSI-EXACT"]  # claimed, not in the run: titled from the catalogue
    assert psi.status == "not tested" and psi.measured is None and psi.title == "PSI intersection is exact"
    assert by_id["P-BYTES-PER-ROUND"].status == "unclaimed pass" and not by_id["P-BYTES-PER-ROUND"].claimed
    assert by_id["S-SECAGG-MASKED"].status == "not claimed"
    assert [c.claimed for c in checks] == sorted((c.claimed for c in checks), reverse=True)  # claimed first
    assert len(checks) == 7  # 5 claimed + the 2 measured tests nobody claimed (F-PSI-EXACT did not run)


def test_both_contradicted_marks_count_as_contradictions() -> None:
    assert [s for s in STATUSES if is_contradiction(s)] == ["contradicted", "contradicted: not shown"]


def test_claimed_ids_in_catalogue_order_and_no_claims() -> None:
    ev = synthetic()
    order = list(catalogue_titles())
    claims = {"S-MIA": True, "F-API-VERSION": True, "P-BYTES-PER-ROUND": True, "F-PSI-EXACT": True}
    claimed = [c.test_id for c in compare_claims(claims, ev) if c.claimed]
    assert claimed == sorted(claimed, key=order.index) == ["F-API-VERSION", "F-PSI-EXACT", "P-BYTES-PER-ROUND",
                                                           "S-MIA"]
    assert {c.status for c in compare_claims({}, ev)} <= {"unclaimed pass", "not claimed"}
