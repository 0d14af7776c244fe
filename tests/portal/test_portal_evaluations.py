"""Evaluations, reports and releases through the Portal with a fake runner of the real runner's interface:
live progress, claims confirmed/contradicted/not tested, the summary without evidence, the full report only after
a reviewer's grant, every submission in the signed audit log, and the bench token nowhere it should not be."""

from __future__ import annotations

import json
import logging

import pytest
from _core_fixtures import TOKEN, FakeRunner, applicant, claimed_project, make_portal, staff
from sqlalchemy import update

from sampan.runtime.store import Store
from sampan.web.errors import Conflict, Forbidden, Invalid
from sampan.web.portal import tables as t


@pytest.fixture
def portal(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    yield make_portal(store, tmp_path / "portal", runner=FakeRunner(tmp_path / "runs"))
    store.close()


def test_start_refused_without_questionnaire_or_while_running(portal) -> None:
    vendor = applicant(portal, "vendor@acme.example")
    pid = portal.create_project(vendor, "Acme", "https://fl.acme.example", "", TOKEN)
    with pytest.raises(Conflict) as no_q:
        portal.start_evaluation(vendor, pid)
    assert no_q.value.field == "questionnaire"
    portal.save_questionnaire(vendor, pid, {}, "", True, "")
    with pytest.raises(Conflict) as no_qual:
        portal.start_evaluation(vendor, pid)
    assert no_qual.value.field == "qualification"
    portal.qualify(vendor, pid)
    with pytest.raises(Invalid) as profile:
        portal.start_evaluation(vendor, pid, "everything")
    assert profile.value.field == "profile"
    eid = portal.start_evaluation(vendor, pid)
    with pytest.raises(Conflict, match="still running"):
        portal.start_evaluation(vendor, pid)
    target = portal.runner.jobs[eid][0]
    assert target.token == TOKEN and target.url == "https://fl.acme.example" and target.allow == ("127.0.0.1/32",)
    portal.cancel_evaluation(vendor, eid)
    assert portal.evaluation(vendor, eid)["status"] == "cancelled"
    assert portal.start_evaluation(vendor, pid) != eid


def test_progress_then_summary_with_claims(portal) -> None:
    vendor = applicant(portal, "vendor@acme.example")
    pid = claimed_project(portal, vendor)
    eid = portal.start_evaluation(vendor, pid, "quick")
    queued = portal.evaluation(vendor, eid)
    assert queued["status"] == "queued" and queued["progress"]["done"] == [] and queued["counts"] is None
    _target, _profile, on_progress, _on_done = portal.runner.jobs[eid]
    on_progress({"index": 2, "total": 6, "test_id": "F-AUC-HORIZONTAL",
                 "done": [{"test_id": "F-API-VERSION", "verdict": "pass"}], "junk": "x" * 10_000})
    running = portal.evaluation(vendor, eid)
    assert running["status"] == "running" and running["progress"]["test_id"] == "F-AUC-HORIZONTAL"
    assert "junk" not in running["progress"]
    portal.runner.finish(eid)
    ev = portal.evaluation(vendor, eid)
    assert ev["status"] == "finished" and ev["counts"] == {"pass": 3, "fail": 1, "skip": 1, "error": 1}
    assert ev["overall"] and len(ev["outcomes"]) == 6 and ev["target"]["platform"] == "weak"
    marks = {c["test_id"]: c["status"] for c in ev["claims"]}
    assert marks["F-API-VERSION"] == "confirmed"  # claimed, passed
    assert marks["S-SECAGG-MASKED"] == "contradicted"  # claimed, failed
    assert marks["S-MIA"] == "contradicted: not shown"  # claimed, ran, skipped (not applicable): R17-PORTAL-9
    assert marks["F-PSI-EXACT"] == "not tested"  # claimed, not in this profile's run
    assert marks["F-AUC-HORIZONTAL"] == "unclaimed pass"
    assert marks["S-TLS-WRONG-CA"] == "not claimed"
    assert ev["claims_summary"]["confirmed"] == 1 and ev["claims_summary"]["contradicted"] == 1
    assert ev["release"] == {"request_id": None, "status": None, "full_available": False}
    on_progress({"index": 9, "total": 9, "test_id": "late", "done": []})  # a late line changes nothing
    assert portal.evaluation(vendor, eid)["status"] == "finished"
    # Attack: withdraw the contradicted claim after seeing the results; the report keeps the claim made before
    portal.save_questionnaire(vendor, pid, {"F-API-VERSION": True}, "", True, "")
    again = {c["test_id"]: c["status"] for c in portal.evaluation(vendor, eid)["claims"]}
    assert again["S-SECAGG-MASKED"] == "contradicted"
    assert "contradicted" in portal.report_file(vendor, eid, "html", False)[0].decode()


def test_failed_run_records_error_without_token(portal) -> None:
    vendor = applicant(portal, "vendor@acme.example")
    pid = claimed_project(portal, vendor)
    eid = portal.start_evaluation(vendor, pid)
    portal.runner.finish(eid, fail=f"time limit exceeded; last request Authorization: Bearer {TOKEN}")
    ev = portal.evaluation(vendor, eid)
    assert ev["status"] == "failed" and "time limit" in ev["error"] and TOKEN not in ev["error"]
    with pytest.raises(Conflict):
        portal.report_file(vendor, eid, "html", False)
    with pytest.raises(Conflict):
        portal.request_full_report(vendor, eid, "INV-1")


def test_summary_has_no_evidence_and_full_report_needs_a_grant(portal) -> None:
    vendor = applicant(portal, "vendor@acme.example")
    reviewer = staff(portal, "rev@portal.example", "reviewer")
    pid = claimed_project(portal, vendor)
    eid = portal.start_evaluation(vendor, pid)
    portal.runner.finish(eid)
    html, media, name = portal.report_file(vendor, eid, "html", False)
    text = html.decode()
    assert media.startswith("text/html") and name.endswith("-summary.html")
    assert "Questionnaire claims vs measured" in text and "contradicted" in text
    assert "Evidence" not in text and "manifest.json" not in text and "pooled_auc" not in text
    assert "<script>alert" not in text  # the fixture's hostile strings stay escaped
    summary = json.loads(portal.report_file(vendor, eid, "json", False)[0])
    assert summary["manifest"] == {} and all(not o["evidence"] and not o["figures"] for o in summary["outcomes"])
    assert {c["status"] for c in summary["questionnaire_claims"]} >= {"confirmed", "contradicted", "not tested",
                                                                       "contradicted: not shown"}
    assert "contradicted: not shown (capability dp absent)" in text
    junit = portal.report_file(vendor, eid, "junit", False)[0].decode()
    assert "<testsuite" in junit and "pooled_auc" not in junit
    with pytest.raises(Invalid) as bad_fmt:
        portal.report_file(vendor, eid, "docx", False)
    assert bad_fmt.value.field == "fmt"
    with pytest.raises(Forbidden):  # the applicant cannot take the full report before a grant
        portal.report_file(vendor, eid, "html", True)
    rid = portal.request_full_report(vendor, eid, "INV-2026-0042")
    with pytest.raises(Conflict):  # one open request at a time
        portal.request_full_report(vendor, eid, "INV-again")
    with pytest.raises(Forbidden):  # nor grant it to itself
        portal.decide_release(vendor, rid, True, "")
    with pytest.raises(Forbidden):
        portal.report_file(vendor, eid, "json", True)
    assert portal.evaluation(vendor, eid)["release"]["status"] == "pending"
    queue = portal.release_requests(reviewer, "pending")
    assert [(r["id"], r["invoice_reference"], r["requested_by"]) for r in queue] == \
        [(rid, "INV-2026-0042", "vendor@acme.example")]
    assert portal.report_file(reviewer, eid, "html", True)[0]  # staff may read the full report to decide
    portal.decide_release(reviewer, rid, True, "invoice paid")
    with pytest.raises(Conflict):
        portal.decide_release(reviewer, rid, False, "changed my mind")
    assert portal.evaluation(vendor, eid)["release"] == {"request_id": rid, "status": "granted",
                                                          "full_available": True}
    full_html = portal.report_file(vendor, eid, "html", True)[0].decode()
    assert "Evidence" in full_html and "pooled_auc" in full_html and "Questionnaire claims vs measured" in full_html
    full = json.loads(portal.report_file(vendor, eid, "json", True)[0])
    assert full["manifest"]["seed"] == 42 and any(o["evidence"] for o in full["outcomes"])
    name = portal.report_file(vendor, eid, "junit", True)[2]
    assert name.endswith("-full.xml") and name.startswith("Acme-FL-2-1-evaluation-")
    assert portal.release_requests(vendor)[0]["decided_by"] == "portal:rev@portal.example"


def test_refused_release_keeps_full_report_closed(portal) -> None:
    vendor = applicant(portal, "vendor@acme.example")
    admin = staff(portal, "admin@portal.example", "admin")
    pid = claimed_project(portal, vendor)
    eid = portal.start_evaluation(vendor, pid)
    portal.runner.finish(eid)
    rid = portal.request_full_report(vendor, eid, "INV-1")
    portal.decide_release(admin, rid, False, "no invoice received")
    with pytest.raises(Forbidden):
        portal.report_file(vendor, eid, "html", True)
    again = portal.request_full_report(vendor, eid, "INV-1b")  # a refused request can be made again
    assert [r["status"] for r in portal.release_requests(admin)] == ["pending", "refused"]
    assert again != rid


def test_pdf_summary_renders(portal) -> None:
    pytest.importorskip("reportlab")
    vendor = applicant(portal, "vendor@acme.example")
    pid = claimed_project(portal, vendor)
    eid = portal.start_evaluation(vendor, pid)
    portal.runner.finish(eid)
    pdf, media, name = portal.report_file(vendor, eid, "pdf", False)
    assert pdf.startswith(b"%PDF") and media == "application/pdf" and name.endswith(".pdf")


def _full_flow(portal, caplog) -> tuple[int, int]:
    with caplog.at_level(logging.DEBUG):
        vendor = applicant(portal, "vendor@acme.example")
        reviewer = staff(portal, "rev@portal.example", "reviewer")
        pid = claimed_project(portal, vendor)
        eid = portal.start_evaluation(vendor, pid)
        portal.runner.finish(eid)
        rid = portal.request_full_report(vendor, eid, "INV-7")
        portal.decide_release(reviewer, rid, True, "ok")
        portal.report_file(vendor, eid, "html", True)
    return pid, eid


def _assert_audited(portal, caplog, pid: int, eid: int) -> None:
    admin = staff(portal, "admin@portal.example", "admin")
    kinds = [e["kind"] for e in reversed(portal.audit_entries(admin))]
    for kind in ("register", "email_verified", "user_created", "project_created", "questionnaire_saved",
                 "qualification", "evaluation_started", "evaluation_ended", "release_requested", "release_decided",
                 "full_report_downloaded"):
        assert f"portal.{kind}" in kinds, kind
    entries = portal.store.events("portal")
    ended = next(e for e in entries if e.kind == "portal.evaluation_ended")
    assert ended.detail["evaluation_id"] == eid and ended.detail["status"] == "finished"
    started = next(e for e in entries if e.kind == "portal.evaluation_started")
    assert started.detail == {"actor": "portal:vendor@acme.example", "project_id": pid, "evaluation_id": eid,
                              "profile": "quick"}
    assert portal.store.verify_audit("portal").ok and portal.audit_verified(admin)
    # the bench token: in no audit entry, no log line, no returned dict
    vendor = portal.accounts.authenticate("vendor@acme.example", "correct horse battery staple")
    returned = [portal.projects(vendor), portal.project(vendor, pid), portal.evaluation(vendor, eid),
                portal.release_requests(vendor), portal.audit_entries(admin), portal.users(admin)]
    assert TOKEN not in repr(returned)
    assert all(TOKEN not in json.dumps(e.detail) for e in entries)
    assert TOKEN not in caplog.text


def test_every_action_in_signed_audit_log_and_token_nowhere(portal, caplog) -> None:
    pid, eid = _full_flow(portal, caplog)
    _assert_audited(portal, caplog, pid, eid)
    with portal.engine.begin() as c:  # the chain notices an edited entry
        from sampan.runtime.store_schema import EventRow

        c.execute(update(EventRow.__table__).where(EventRow.__table__.c.kind == "portal.release_decided")
                  .values(detail={"actor": "portal:someone-else", "granted": True}))
    assert not portal.store.verify_audit("portal").ok


@pytest.mark.postgres
def test_flow_on_postgresql(postgres_url, tmp_path, caplog) -> None:
    store = Store.open(postgres_url)
    try:
        portal = make_portal(store, tmp_path / "portal", runner=FakeRunner(tmp_path / "runs"))
        pid, eid = _full_flow(portal, caplog)
        _assert_audited(portal, caplog, pid, eid)
        assert portal.evaluation(portal.accounts.authenticate("rev@portal.example",
                                                              "correct horse battery staple"), eid)["status"] \
            == "finished"
        with portal.engine.connect() as c:
            assert c.execute(t.projects.select()).first().bench_token_sealed != TOKEN
    finally:
        store.close()


def test_restart_fails_interrupted_evaluations(tmp_path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    portal = make_portal(store, tmp_path / "portal", runner=FakeRunner(tmp_path / "runs"))
    vendor = applicant(portal, "vendor@acme.example")
    pid = claimed_project(portal, vendor)
    eid = portal.start_evaluation(vendor, pid)
    restarted = make_portal(store, tmp_path / "portal", runner=FakeRunner(tmp_path / "runs2"))
    assert restarted.fail_interrupted() == 1 and restarted.fail_interrupted() == 0
    ev = restarted.evaluation(vendor, eid)
    assert ev["status"] == "failed" and "start it again" in ev["error"]
    assert restarted.start_evaluation(vendor, pid) != eid
    store.close()
