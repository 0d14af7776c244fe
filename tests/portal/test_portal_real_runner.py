"""The portal with the real EvaluationRunner (a bounded subprocess): a quick-profile evaluation of the in-repo weak
platform (the worker starts it on its own loopback), progress recorded, results and claims, downloads, audit."""

from __future__ import annotations

import json
import time

import pytest
from _core_fixtures import TOKEN, applicant, claimed_project, make_portal, staff

from sampan.runtime.store import Store
from sampan.verify.egress import EgressPolicy
from sampan.web.portal.runner import EvaluationRunner

URL = "https://fl.acme.example/bench/v1"


@pytest.mark.slow
def test_quick_evaluation_of_weak_platform_through_the_portal(tmp_path, caplog) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    runner = EvaluationRunner(tmp_path / "runs", time_limit_s=300)
    try:
        portal = make_portal(store, tmp_path / "portal", runner=runner)
        portal.egress = EgressPolicy(["127.0.0.1/32", "::1/128"])
        portal.local_platforms[URL] = "weak"
        vendor = applicant(portal, "vendor@acme.example")
        pid = claimed_project(portal, vendor)
        eid = portal.start_evaluation(vendor, pid, "quick")
        deadline = time.monotonic() + 280
        while time.monotonic() < deadline:
            ev = portal.evaluation(vendor, eid)
            if ev["status"] not in ("queued", "running"):
                break
            time.sleep(0.5)
        assert ev["status"] == "finished", ev["error"]
        assert ev["progress"]["total"] == len(ev["outcomes"]) and len(ev["progress"]["done"]) >= 1
        assert ev["target"]["platform"] and sum(ev["counts"].values()) == len(ev["outcomes"])
        marks = {c["test_id"]: c for c in ev["claims"]}
        assert marks["F-API-VERSION"]["status"] == "confirmed"
        assert marks["S-SECAGG-MASKED"]["status"] == "contradicted"  # the weak platform sends clear updates
        assert marks["F-PSI-EXACT"]["status"] == "not tested"  # not in the quick profile
        summary = json.loads(portal.report_file(vendor, eid, "json", False)[0])
        assert summary["manifest"] == {} and not any(o["evidence"] for o in summary["outcomes"])
        reviewer = staff(portal, "rev@portal.example", "reviewer")
        rid = portal.request_full_report(vendor, eid, "INV-9")
        portal.decide_release(reviewer, rid, True, "")
        full = json.loads(portal.report_file(vendor, eid, "json", True)[0])
        assert full["manifest"] and any(o["evidence"] for o in full["outcomes"])
        assert portal.store.verify_events("portal")
        assert TOKEN not in caplog.text
    finally:
        runner.shutdown()
        store.close()
